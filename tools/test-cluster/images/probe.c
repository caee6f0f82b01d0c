/* A probe for tests on the real test node: prints the identity it runs with (uid, gid, effective
 * capabilities, no_new_privs, seccomp mode) and whether the root filesystem is writable, then
 * exits 0. `probe sleep` waits for SIGTERM or SIGINT. `probe peek NEEDLE [PATH...]` prints how
 * many other processes it can see, in how many readable environments (its own included) NEEDLE
 * occurs, and whether each PATH exists, then exits 0; `probe watch NEEDLE [PATH...]` does the same
 * and then waits like `sleep` (for a sidecar, which must keep running). Built statically; the
 * image holds nothing else. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }

static void wait_for_signal(void) {
  /* As a container's first process, a signal without a handler is ignored: handle them. */
  struct sigaction q = {.sa_handler = quit};
  sigaction(SIGINT, &q, 0);
  sigaction(SIGTERM, &q, 0);
  for (;;) pause();
}

static void peek(int argc, char **argv) {
  const char *needle = argv[2];
  int others = 0, seen = 0;
  DIR *d = opendir("/proc");
  struct dirent *e;
  while (d && (e = readdir(d))) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end || pid <= 0) continue;
    if (pid != (long)getpid()) others++;
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/environ", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) continue;
    static char buf[1 << 16];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n > 0 && memmem(buf, (size_t)n, needle, strlen(needle))) seen++;
  }
  if (d) closedir(d);
  printf("others=%d secret-seen=%d\n", others, seen);
  for (int i = 3; i < argc; i++) printf("path %s=%s\n", argv[i], access(argv[i], F_OK) == 0 ? "present" : "absent");
  fflush(stdout);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "sleep") == 0) wait_for_signal();
  if (argc > 2 && (strcmp(argv[1], "peek") == 0 || strcmp(argv[1], "watch") == 0)) {
    peek(argc, argv);
    if (strcmp(argv[1], "watch") == 0) wait_for_signal();
    return 0;
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
