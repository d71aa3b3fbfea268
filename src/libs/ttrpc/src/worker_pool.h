// A small pool of threads that grows when every worker is busy (handlers such as WaitProcess
// block for a long time, so a task must never wait for another to finish) and shrinks back
// when workers stay idle.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace kata::ttrpc {

class WorkerPool {
  public:
    explicit WorkerPool(size_t keepIdle = 2,
                        std::chrono::milliseconds idleTimeout = std::chrono::seconds(30));
    // Waits for queued and running tasks to finish.
    ~WorkerPool();
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    void submit(std::function<void()> task);
    size_t threads() const;

  private:
    void run();
    void reapLocked();

    const size_t keepIdle_;
    const std::chrono::milliseconds idleTimeout_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> tasks_;
    std::map<std::thread::id, std::thread> workers_;
    std::vector<std::thread::id> exited_;
    size_t idle_ = 0;
    bool stop_ = false;
};

}  // namespace kata::ttrpc
