/* A probe for tests on the real test node: prints the identity it runs with (uid, gid, effective
 * capabilities, no_new_privs, seccomp mode) and whether the root filesystem is writable, then
 * exits 0. `probe sleep` waits for SIGTERM or SIGINT. Built statically; the image holds nothing else. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "sleep") == 0) {
    /* As a container's first process, a signal without a handler is ignored: handle them. */
    struct sigaction q = {.sa_handler = quit};
    sigaction(SIGINT, &q, 0);
    sigaction(SIGTERM, &q, 0);
    for (;;) pause();
  }
  printf("uid=%d gid=%d\n", (int)getuid(), (int)getgid());
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  while (f && fgets(line, sizeof line, f)) {
    if (!strncmp(line, "CapEff:", 7) || !strncmp(line, "NoNewPrivs:", 11) || !strncmp(line, "Seccomp:", 8)) fputs(line, stdout);
  }
  if (f) fclose(f);
  FILE *w = fopen("/probe-write-test", "w");
  printf("rootfs=%s\n", w ? "writable" : "read-only");
  if (w) fclose(w);
  return 0;
}
