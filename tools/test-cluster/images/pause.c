/* The pod sandbox ("pause") process of the real test node: holds the pod's namespaces, reaps
 * orphaned children and exits on SIGINT or SIGTERM. Built statically; the image holds nothing else. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, 0, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction q = {.sa_handler = quit};
  struct sigaction r = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  sigaction(SIGINT, &q, 0);
  sigaction(SIGTERM, &q, 0);
  sigaction(SIGCHLD, &r, 0);
  for (;;) pause();
}
