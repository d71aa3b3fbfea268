#include "terminal.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "kata/common/error.h"
#include "sync.h"

namespace kata::jail {

StdioChildEnds makeStdioPipes(ProcessIo* io) {
    StdioChildEnds ends;
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throwErrno("pipe2", "stdin");
    ends.in.reset(p[0]);
    io->stdinWriter.reset(p[1]);
    if (::pipe2(p, O_CLOEXEC) != 0) throwErrno("pipe2", "stdout");
    io->stdoutReader.reset(p[0]);
    ends.out.reset(p[1]);
    if (::pipe2(p, O_CLOEXEC) != 0) throwErrno("pipe2", "stderr");
    io->stderrReader.reset(p[0]);
    ends.err.reset(p[1]);
    return ends;
}

void childSetupTerminal(int syncFd, uint32_t rows, uint32_t cols) {
    int master = ::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) childFail(syncFd, "open", "/dev/ptmx", errno);
    if (::unlockpt(master) != 0) childFail(syncFd, "unlockpt", "/dev/ptmx", errno);
    int ptyNum = 0;
    if (::ioctl(master, TIOCGPTN, &ptyNum) != 0)
        childFail(syncFd, "ioctl TIOCGPTN", "/dev/ptmx", errno);
    char slavePath[64];
    snprintf(slavePath, sizeof slavePath, "/dev/pts/%d", ptyNum);
    int slave = ::open(slavePath, O_RDWR | O_NOCTTY);
    if (slave < 0) childFail(syncFd, "open", slavePath, errno);
    if (rows || cols) {
        struct winsize ws = {};
        ws.ws_row = static_cast<unsigned short>(rows);
        ws.ws_col = static_cast<unsigned short>(cols);
        ::ioctl(slave, TIOCSWINSZ, &ws);
    }
    childSend(syncFd, SyncType::kPty, 0, master);
    ::close(master);
    if (::setsid() < 0) childFail(syncFd, "setsid", "", errno);
    if (::ioctl(slave, TIOCSCTTY, 0) != 0) childFail(syncFd, "ioctl TIOCSCTTY", slavePath, errno);
    for (int fd = 0; fd < 3; ++fd)
        if (::dup2(slave, fd) < 0) childFail(syncFd, "dup2", slavePath, errno);
    if (slave > 2) ::close(slave);
}

void childSetupPipes(int syncFd, int in, int out, int err) {
    if (::setsid() < 0) childFail(syncFd, "setsid", "", errno);
    int fds[3] = {in, out, err};
    for (int i = 0; i < 3; ++i) {
        if (fds[i] < 0) continue;
        if (fds[i] == i) {
            ::fcntl(i, F_SETFD, 0);  // keep across execve
        } else if (::dup2(fds[i], i) < 0) {
            childFail(syncFd, "dup2", "stdio", errno);
        }
    }
    for (int fd : fds)
        if (fd > 2) ::close(fd);
}

}  // namespace kata::jail
