/* core.process: processes without shell strings, for hpsearch's workers and for tests. fork runs
 * a Lua function in a child process that shares the parent's memory copy-on-write and hands back
 * a string through a pipe; spawn starts a program (posix_spawn, no shell); wait, kill, poll, read
 * and sleep supervise them; clock is monotonic. File descriptors are plain integers owned by the
 * caller (close them). Nothing here touches tensors: the thread policy after a fork is the
 * caller's (see hpsearch.lua). Errors raise "process.NAME: ..." as the rest of cnn.core does. */
#define _GNU_SOURCE /* pipe2, O_TMPFILE, mkostemp */
#include "lcnn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_FDS 256 /* poll() takes at most this many descriptors */

static int check_fd(lua_State *L, int idx, const char *fn) {
  lua_Integer fd = luaL_checkinteger(L, idx);
  if (fd < 0 || fd > INT32_MAX) return lcnn_error(L, fn, "not a file descriptor: %d", (int)fd);
  return (int)fd;
}

static pid_t check_pid(lua_State *L, int idx, const char *fn) {
  lua_Integer pid = luaL_checkinteger(L, idx);
  if (pid <= 0 || pid > INT32_MAX) return lcnn_error(L, fn, "expected a process id (> 0), got %d", (int)pid);
  return (pid_t)pid;
}

/* Writes all of s to fd, riding out EINTR and short writes. */
static int write_all(int fd, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    s += w, n -= (size_t)w;
  }
  return 0;
}

/* Message handler of the child's call: "message\nstack traceback:..." */
static int child_traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* The children started here as leaders of their own process groups (fork's default, spawn's
 * group = true): only their groups does wait clean up. A child started in ours that made itself a
 * leader (setsid) is a daemon on purpose, and what it left running is not ours to kill. */
static pid_t *leaders;
static size_t n_leaders, cap_leaders;

static void note_leader(pid_t pid) {
  if (n_leaders == cap_leaders) {
    size_t cap = cap_leaders ? 2 * cap_leaders : 16;
    pid_t *p = realloc(leaders, cap * sizeof *p);
    if (!p) return; /* then its group is left as it is: the safe side */
    leaders = p, cap_leaders = cap;
  }
  leaders[n_leaders++] = pid;
}

/* whether pid was noted (and forgets it) */
static bool take_leader(pid_t pid) {
  for (size_t i = 0; i < n_leaders; i++)
    if (leaders[i] == pid) {
      leaders[i] = leaders[--n_leaders];
      return true;
    }
  return false;
}

/* A group leader's parent died (SIGKILL, SIGTERM, a crash): what the child started (a trial's
 * os.execute, its background jobs) dies with it; PR_SET_PDEATHSIG alone reaches the child only. */
static void parent_died(int sig) {
  (void)sig;
  kill(0, SIGKILL); /* the whole group, the child included */
}

/* The child's side of fork: never returns. */
static _Noreturn void child_main(lua_State *L, pid_t parent, int result_fd, int output_fd, int group) {
  if (group) { /* Ctrl-C at the terminal reaches the parent only; kill(-pid) the tree */
    setpgid(0, 0);
    /* a real-time signal of its own (glibc keeps the first ones below SIGRTMIN): no other sender */
    signal(SIGRTMIN, parent_died);
  }
  prctl(PR_SET_PDEATHSIG, group ? SIGRTMIN : SIGKILL); /* the parent's death takes the trial with it */
  if (getppid() != parent) _exit(1);                   /* it died before prctl */
  int sigs[] = {SIGINT, SIGTERM, SIGQUIT, SIGPIPE, SIGCHLD, SIGWINCH, SIGHUP};
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) signal(sigs[i], SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, STDIN_FILENO);
    if (output_fd < 0) output_fd = null;
  }
  if (output_fd >= 0) {
    dup2(output_fd, STDOUT_FILENO);
    dup2(output_fd, STDERR_FILENO);
  }
  lua_sethook(L, NULL, 0, 0); /* a Ctrl-C the parent got just before the fork is the parent's */
  /* stack: ..., fn */
  lua_pushcfunction(L, child_traceback);
  lua_insert(L, -2);
  int status = lua_pcall(L, 0, 1, -2);
  int code = 0;
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "%s\n", msg ? msg : "(error)");
    code = 1;
  } else if (lua_type(L, -1) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    if (write_all(result_fd, s, n) != 0) code = 2;
  }
  fflush(NULL);
  _exit(code);
}

/* process.fork(fn, job): runs fn() in a child process and returns its pid in this one. The child
 * shares this process' memory copy-on-write (the closure, its upvalues and tensors as they are
 * now), reads /dev/null, writes its stdout and stderr to job.output (a descriptor; default
 * /dev/null), runs in its own process group unless job.group == false, and dies with its
 * parent. When fn returns a string the child writes it to a pipe; the parent reads it from
 * job.fd (non-blocking: process.read). The child exits 0 after fn returns, 1 when it raises
 * (the traceback to its stderr), whatever fn's own os.exit says otherwise. job.pid and job.fd
 * are set before fork returns, so a Ctrl-C right after it cannot lose the child. */
static int p_fork(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TTABLE);
  int output_fd = -1, group = 1;
  if (lua_getfield(L, 2, "output") != LUA_TNIL) output_fd = check_fd(L, -1, "process.fork");
  lua_pop(L, 1);
  /* job holds the caller's own fields too: only the two read here are checked */
  group = lcnn_opt_boolean(L, 2, "process.fork", "group", true);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return lcnn_error(L, "process.fork", "cannot create a pipe: %s", strerror(errno));
  fflush(NULL); /* buffered output would be written twice, once by each process */
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(fds[0]), close(fds[1]);
    return lcnn_error(L, "process.fork", "%s", strerror(e));
  }
  if (pid == 0) {
    close(fds[0]);
    lua_settop(L, 1);
    child_main(L, parent, fds[1], output_fd, group);
  }
  close(fds[1]);
  if (group) note_leader(pid);
  fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
  lua_pushinteger(L, pid);
  lua_setfield(L, 2, "pid");
  lua_pushinteger(L, fds[0]);
  lua_setfield(L, 2, "fd");
  lua_pushinteger(L, pid);
  lua_pushinteger(L, fds[0]);
  return 2;
}

/* Opens path (or dup2s a descriptor) for a spawned program's standard stream: 0, an errno, or
 * -1 when the option is neither (its value left on the stack). */
static int add_open(lua_State *L, posix_spawn_file_actions_t *fa, int idx, const char *key, int target, int flags) {
  int t = lua_getfield(L, idx, key);
  int r = 0;
  if (t == LUA_TSTRING) {
    r = posix_spawn_file_actions_addopen(fa, target, lua_tostring(L, -1), flags, 0644);
  } else if (t == LUA_TNUMBER) {
    r = posix_spawn_file_actions_adddup2(fa, check_fd(L, -1, "process.spawn"), target);
  } else if (t != LUA_TNIL) {
    return -1; /* left on the stack for the message */
  }
  lua_pop(L, 1);
  return r;
}

/* process.spawn(argv, {stdin=, stdout=, stderr=, env=, group=false}): starts argv[1] (searched
 * on PATH) with arguments argv[2..], no shell involved, and returns its pid. stdin/stdout/stderr
 * are a path (stdout and stderr truncated) or a descriptor; stderr = "stdout" joins the two.
 * env = {NAME = value or false} adds to, replaces or removes from this environment. group = true
 * runs it in a process group of its own (kill(pid) then reaches everything it starts). */
static int p_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int has_opts = !lua_isnoneornil(L, 2);
  if (has_opts) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  static const char *const known[] = {"stdin", "stdout", "stderr", "env", "group", NULL};
  lcnn_options(L, 2, "process.spawn", known);
  bool group = lcnn_opt_boolean(L, 2, "process.spawn", "group", false);
  int argc = (int)luaL_len(L, 1);
  if (argc < 1 || argc > 4096) return lcnn_error(L, "process.spawn", "argv must list the program and its arguments");
  const char **argv = lua_newuserdatauv(L, sizeof(char *) * ((size_t)argc + 1), 0); /* 3 */
  lua_createtable(L, argc, 0); /* 4: the arguments as strings, kept alive */
  for (int i = 0; i < argc; i++) {
    lua_rawgeti(L, 1, i + 1);
    if (!lua_isstring(L, -1)) return lcnn_error(L, "process.spawn", "argv[%d] is not a string", i + 1);
    argv[i] = lua_tostring(L, -1); /* a number becomes its text, in the copy on the stack */
    lua_rawseti(L, 4, i + 1);
  }
  argv[argc] = NULL;
  /* the environment: ours, less the names env sets, plus env's string values */
  lua_newtable(L); /* 5: names set */
  size_t n_env = 0;
  for (char **e = environ; *e; e++) n_env++;
  size_t n_extra = 0;
  if (!has_opts) lua_pushnil(L);
  else if (lua_getfield(L, 2, "env") != LUA_TNIL && !lua_istable(L, -1))
    return lcnn_error(L, "process.spawn", "env must be a table, got %s", luaL_typename(L, -1));
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) != LUA_TSTRING || (!lua_isstring(L, -1) && lua_toboolean(L, -1)))
        return lcnn_error(L, "process.spawn", "env must map names to strings (or false to remove them)");
      lua_pushvalue(L, -2);
      lua_pushboolean(L, 1);
      lua_settable(L, 5);
      lua_pop(L, 1);
      n_extra++;
    }
  }
  int env_idx = lua_gettop(L); /* the env table, or nil */
  const char **envp = lua_newuserdatauv(L, sizeof(char *) * (n_env + n_extra + 1), 0);
  lua_newtable(L); /* keeps the "NAME=value" strings alive */
  int keep = lua_gettop(L);
  size_t k = 0;
  for (char **e = environ; *e; e++) {
    const char *eq = strchr(*e, '=');
    if (eq == NULL) continue;
    lua_pushlstring(L, *e, (size_t)(eq - *e));
    int set = lua_rawget(L, 5) != LUA_TNIL;
    lua_pop(L, 1);
    if (!set) envp[k++] = *e;
  }
  if (lua_istable(L, env_idx)) {
    lua_pushnil(L);
    while (lua_next(L, env_idx)) {
      if (lua_isstring(L, -1)) {
        envp[k++] = lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
        lua_rawseti(L, keep, (lua_Integer)k);
      }
      lua_pop(L, 1);
    }
  }
  envp[k] = NULL;

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  int err = 0;
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
  if (has_opts) {
    if (!err) err = add_open(L, &fa, 2, "stdin", STDIN_FILENO, O_RDONLY);
    if (!err) err = add_open(L, &fa, 2, "stdout", STDOUT_FILENO, O_WRONLY | O_CREAT | O_TRUNC);
    if (!err) {
      if (lua_getfield(L, 2, "stderr") == LUA_TSTRING && strcmp(lua_tostring(L, -1), "stdout") == 0) {
        lua_pop(L, 1);
        err = posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
      } else {
        lua_pop(L, 1);
        err = add_open(L, &fa, 2, "stderr", STDERR_FILENO, O_WRONLY | O_CREAT | O_TRUNC);
      }
    }
  }
  if (group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&attr, 0);
  }
  sigset_t all, none;
  sigfillset(&all);
  sigdelset(&all, SIGKILL), sigdelset(&all, SIGSTOP);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all); /* the program starts with default signal actions */
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, flags);
  pid_t pid = 0;
  fflush(NULL);
  if (err < 0) {
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return lcnn_error(L, "process.spawn", "stdin, stdout and stderr must be paths or descriptors, got %s",
                      luaL_typename(L, -1));
  }
  if (!err) err = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, (char *const *)envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (err) return lcnn_error(L, "process.spawn", "cannot start %s: %s", argv[0], strerror(err));
  if (group) note_leader(pid);
  lua_pushinteger(L, pid);
  return 1;
}

/* process.wait(pid, block): nil while pid runs (block = false, the default); else "exit", code
 * or "signal", number once it ended (and is reaped), or "gone" when it is not our child. When pid
 * was started here as the leader of a group of its own (fork's default, spawn's group = true), what
 * is left of the group (jobs it started in the background, the children of a trial killed from
 * outside) is killed before pid is reaped: until then its id cannot name another group. */
static int p_wait(lua_State *L) {
  pid_t pid = check_pid(L, 1, "process.wait");
  int block = lua_toboolean(L, 2);
  siginfo_t info;
  int w;
  do {
    info.si_pid = 0;
    w = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT | (block ? 0 : WNOHANG));
  } while (w < 0 && errno == EINTR && block);
  if ((w == 0 && info.si_pid == 0) || (w < 0 && errno == EINTR)) return 0;
  if (w == 0 && take_leader(pid) && getpgid(pid) == pid) kill(-pid, SIGKILL);
  int status;
  pid_t r;
  do { r = waitpid(pid, &status, 0); } while (r < 0 && errno == EINTR);
  if (r < 0) {
    lua_pushliteral(L, "gone");
    return 1;
  }
  if (WIFSIGNALED(status)) {
    lua_pushliteral(L, "signal");
    lua_pushinteger(L, WTERMSIG(status));
  } else {
    lua_pushliteral(L, "exit");
    lua_pushinteger(L, WEXITSTATUS(status));
  }
  return 2;
}

static const struct {
  const char *name;
  int sig;
} signals[] = {{"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT},   {"HUP", SIGHUP},  {"QUIT", SIGQUIT},
               {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"STOP", SIGSTOP}, {"CONT", SIGCONT}};

/* process.kill(pid, sig): sends sig ("TERM", "KILL", "INT", ... or a number; default "TERM") to
 * pid's process group, when pid leads one, and to pid. True when either was signalled. */
static int p_kill(lua_State *L) {
  pid_t pid = check_pid(L, 1, "process.kill");
  int sig = SIGTERM;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    sig = (int)luaL_checkinteger(L, 2);
  } else if (!lua_isnoneornil(L, 2)) {
    const char *name = luaL_checkstring(L, 2);
    if (strncmp(name, "SIG", 3) == 0) name += 3;
    sig = -1;
    for (size_t i = 0; i < sizeof signals / sizeof *signals; i++)
      if (strcmp(name, signals[i].name) == 0) sig = signals[i].sig;
    if (sig < 0) return lcnn_error(L, "process.kill", "unknown signal '%s'", lua_tostring(L, 2));
  }
  int a = getpgid(pid) == pid ? kill(-pid, sig) : -1;
  int b = kill(pid, sig);
  lua_pushboolean(L, a == 0 || b == 0);
  return 1;
}

/* process.read(fd, max): up to max bytes (default 64 KB) that are there now; "" when none are
 * yet (a non-blocking descriptor), nil at end of file. */
static int p_read(lua_State *L) {
  int fd = check_fd(L, 1, "process.read");
  lua_Integer max = luaL_optinteger(L, 2, 65536);
  if (max < 1) return lcnn_error(L, "process.read", "max must be positive");
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, (size_t)max);
  ssize_t n;
  do { n = read(fd, p, (size_t)max); } while (n < 0 && errno == EINTR);
  if (n == 0) return 0;
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) n = 0;
    else return lcnn_error(L, "process.read", "%s", strerror(errno));
  }
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

/* process.close(fd) */
static int p_close(lua_State *L) {
  close(check_fd(L, 1, "process.close"));
  return 0;
}

/* process.poll(fds, seconds): waits until one of the descriptors in the list is readable or
 * closed, at most `seconds` (default: no limit). True when one is, false at the timeout or
 * when a signal (Ctrl-C) came first. */
static int p_poll(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Number s = luaL_optnumber(L, 2, -1);
  struct pollfd fds[MAX_FDS];
  int n = (int)luaL_len(L, 1);
  if (n > MAX_FDS) return lcnn_error(L, "process.poll", "at most %d descriptors, got %d", MAX_FDS, n);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    fds[i].fd = check_fd(L, -1, "process.poll");
    fds[i].events = POLLIN;
    fds[i].revents = 0;
    lua_pop(L, 1);
  }
  int ms = s < 0 ? -1 : s > 1e6 ? 1000000000 : (int)(s * 1000 + 0.5);
  int r = poll(fds, (nfds_t)n, ms);
  lua_pushboolean(L, r > 0);
  return 1;
}

/* process.sleep(seconds): true, or false when a signal (Ctrl-C) cut it short. */
static int p_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  if (!(s >= 0)) return lcnn_error(L, "process.sleep", "seconds must be >= 0");
  if (s > 1e9) s = 1e9;
  struct timespec ts = {(time_t)s, (long)((s - (lua_Number)(time_t)s) * 1e9)};
  lua_pushboolean(L, nanosleep(&ts, NULL) == 0);
  return 1;
}

/* process.clock(): seconds on a monotonic clock. */
static int p_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
  return 1;
}

/* process.tmpfile(): a descriptor of a new, already deleted file (a child's output goes there;
 * process.tail reads it back). */
static int p_tmpfile(lua_State *L) {
  const char *dir = getenv("TMPDIR");
  if (dir == NULL || dir[0] == '\0') dir = "/tmp";
  int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    const char *path = lua_pushfstring(L, "%s/cnnlua.XXXXXX", dir);
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    fd = mkostemp(buf, O_CLOEXEC);
    if (fd >= 0) unlink(buf);
  }
  if (fd < 0) return lcnn_error(L, "process.tmpfile", "cannot create a file in %s: %s", dir, strerror(errno));
  lua_pushinteger(L, fd);
  return 1;
}

/* process.tail(fd, n): the last n bytes (default 4096) of the file behind fd. */
static int p_tail(lua_State *L) {
  int fd = check_fd(L, 1, "process.tail");
  lua_Integer want = luaL_optinteger(L, 2, 4096);
  struct stat st;
  if (want < 0 || fstat(fd, &st) != 0) return lcnn_error(L, "process.tail", "cannot read descriptor %d", fd);
  off_t start = st.st_size > want ? st.st_size - (off_t)want : 0;
  size_t len = (size_t)(st.st_size - start);
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, len);
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread(fd, p + got, len - got, start + (off_t)got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  luaL_pushresultsize(&b, got);
  return 1;
}

/* process.columns(): the width of the terminal on stdout, or nil when stdout is not one. */
static int p_columns(lua_State *L) {
  struct winsize ws;
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0) return 0;
  lua_pushinteger(L, ws.ws_col);
  return 1;
}

/* process.pid(): this process' id. */
static int p_pid(lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

void lcnn_open_process(lua_State *L, int tbl) {
  static const luaL_Reg fns[] = {
      {"fork", p_fork},   {"spawn", p_spawn}, {"wait", p_wait},       {"kill", p_kill},   {"read", p_read},
      {"close", p_close}, {"poll", p_poll},   {"sleep", p_sleep},     {"clock", p_clock}, {"tmpfile", p_tmpfile},
      {"tail", p_tail},   {"pid", p_pid},     {"columns", p_columns}, {NULL, NULL}};
  lua_pushvalue(L, tbl);
  luaL_setfuncs(L, fns, 0);
  lua_pop(L, 1);
}
