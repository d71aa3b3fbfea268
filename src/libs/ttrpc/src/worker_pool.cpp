#include "worker_pool.h"

#include "kata/common/log.h"

namespace kata::ttrpc {

WorkerPool::WorkerPool(size_t keepIdle, std::chrono::milliseconds idleTimeout)
    : keepIdle_(keepIdle), idleTimeout_(idleTimeout) {}

WorkerPool::~WorkerPool() {
    std::map<std::thread::id, std::thread> workers;
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
        cv_.notify_all();
        workers.swap(workers_);
    }
    for (auto& [id, t] : workers) t.join();
}

size_t WorkerPool::threads() const {
    std::lock_guard<std::mutex> lock(mu_);
    return workers_.size() - exited_.size();
}

void WorkerPool::reapLocked() {
    for (auto id : exited_) {
        auto it = workers_.find(id);
        if (it != workers_.end()) {
            it->second.join();  // the thread has left run(); this returns at once
            workers_.erase(it);
        }
    }
    exited_.clear();
}

void WorkerPool::submit(std::function<void()> task) {
    std::lock_guard<std::mutex> lock(mu_);
    reapLocked();
    tasks_.push_back(std::move(task));
    if (tasks_.size() > idle_) {
        std::thread t([this] { run(); });
        auto id = t.get_id();
        workers_.emplace(id, std::move(t));
        ++idle_;  // counted as idle until it takes its first task
    } else {
        cv_.notify_one();
    }
}

void WorkerPool::run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
        if (!tasks_.empty()) {
            auto task = std::move(tasks_.front());
            tasks_.pop_front();
            --idle_;
            lock.unlock();
            try {
                task();
            } catch (const std::exception& e) {
                log::Logger("ttrpc").error("worker task failed", {{"error", e.what()}});
            } catch (...) {
                log::Logger("ttrpc").error("worker task failed with a non-standard exception");
            }
            task = nullptr;  // release captures outside the lock
            lock.lock();
            ++idle_;
            continue;
        }
        if (stop_) break;
        if (cv_.wait_for(lock, idleTimeout_) == std::cv_status::timeout && tasks_.empty() &&
            !stop_ && idle_ > keepIdle_) {
            break;
        }
    }
    --idle_;
    if (!stop_) exited_.push_back(std::this_thread::get_id());
}

}  // namespace kata::ttrpc
