/* pause.c: the sandbox ("pause") process of the CRI test harness's pod image. It sits as
 * PID 1 of the pod, reaps any child that is handed to it, and exits 0 on SIGINT/SIGTERM.
 * Built with `gcc -static` by tests/cri/lib.sh, so the image needs nothing else. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc > 1 && argv[1][0] == '-' && argv[1][1] == 'v') {
    puts("kata-cpp test pause 1.0");
    return 0;
  }
  if (getpid() != 1)
    fprintf(stderr, "pause: not PID 1; children will not be reaped here\n");

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
    perror("pause: sigprocmask");
    return 1;
  }
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0)
      continue;
    if (sig == SIGCHLD) {
      while (waitpid(-1, NULL, WNOHANG) > 0) {
      }
      continue;
    }
    fprintf(stderr, "pause: signal %d, exiting\n", sig);
    return 0;
  }
}
