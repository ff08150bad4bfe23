// SPDX-License-Identifier: MIT
// measure: run one benchmark process; record its wall time and peak RSS.
//
// Usage: measure TIMEOUT_S STATS_FILE -- COMMAND [ARG...]
//
// stdout/stderr are the caller's (bench/run.sh redirects them). Peak RSS is
// the child's ru_maxrss from wait4(), so it covers the whole process (every
// benchmark of a goro binary, start-up included), unlike the in-process
// VmHWM figures, which cover one measured part. Why a C program: Linux keeps
// the high-water mark of the address space a process had before exec() in
// ru_maxrss, so a child forked from Python (or vfork'ed, which shares the
// parent's) would report at least Python's ~14 MiB; forked from this small
// program it reports at most ~1 MiB of launcher. The timeout is enforced
// here too, since wait4() on a timeout(1) wrapper would measure the wrapper.
// STATS_FILE gets `wall_s`, `maxrss_mib` and `rc` lines; rc is the child's
// exit status, 124 after a timeout (as timeout(1)), 128+N after signal N.
// Build: cc -O2 -o measure measure.c
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t timed_out = 0;
static pid_t child = 0;

static void on_alarm(int sig) {
  (void)sig;
  timed_out = 1;
  kill(-child, SIGKILL);  // the child leads its own process group: only what it started
}

int main(int argc, char** argv) {
  if (argc < 5 || strcmp(argv[3], "--") != 0) {
    fprintf(stderr, "usage: measure TIMEOUT_S STATS_FILE -- COMMAND [ARG...]\n");
    return 2;
  }
  const unsigned limit = (unsigned)strtoul(argv[1], NULL, 10);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  child = fork();
  if (child < 0) {
    perror("measure: fork");
    return 2;
  }
  if (child == 0) {
    setpgid(0, 0);
    execvp(argv[4], argv + 4);
    fprintf(stderr, "measure: cannot run %s: %s\n", argv[4], strerror(errno));
    _exit(127);
  }
  setpgid(child, child);  // also here: no race with the alarm
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);
  alarm(limit);
  int status = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  while (wait4(child, &status, 0, &ru) < 0) {
    if (errno != EINTR) {
      perror("measure: wait4");
      return 2;
    }
  }
  alarm(0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  int rc = timed_out ? 124 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  FILE* f = fopen(argv[2], "w");
  if (f != NULL) {
    fprintf(f, "wall_s %.3f\nmaxrss_mib %.1f\nrc %d\n",
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9, (double)ru.ru_maxrss / 1024.0,
            rc);
    fclose(f);
  }
  return rc;
}
