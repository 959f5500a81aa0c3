/* test_repl: drives the cnnlua executable (path in argv[1]) as a user would: through a pseudo-
 * terminal for the REPL (line editing, multi-line chunks, Ctrl-C, Ctrl-D, history) and through
 * pipes for scripts and options. Every wait has a deadline, so a hung cnnlua fails, never blocks. */

#include <errno.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_MS 20000 /* generous: sanitizer builds start slowly */

static const char *cnnlua;
static char tmpdir[] = "/tmp/test_repl.XXXXXX";
static char history[256]; /* CNNLUA_HISTORY for the terminal sessions */
static int failures;
static const char *extra_env; /* "NAME=value" added to the next runs' environment, or NULL */

#define CHECK(cond, ...)                                     \
  do {                                                       \
    if (!(cond)) {                                           \
      failures++;                                            \
      fprintf(stderr, "  FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                          \
      fputc('\n', stderr);                                   \
    }                                                        \
  } while (0)

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    perror(path);
    exit(2);
  }
  fputs(text, f);
  fclose(f);
}

/* The whole file as a string (free it), or NULL. */
static char *read_file(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return NULL;
  size_t cap = 4096, len = 0;
  char *s = malloc(cap);
  size_t n;
  while ((n = fread(s + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (cap - len - 1 == 0) s = realloc(s, cap *= 2);
  }
  s[len] = '\0';
  fclose(f);
  return s;
}

/* Waits for pid until the deadline; kills it past that. Returns the wait status or -1. */
static int wait_until(pid_t pid, long deadline) {
  int status;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 || now_ms() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    sleep_ms(10);
  }
}

/* ---- cnnlua through pipes ------------------------------------------------------------------ */

typedef struct Run {
  char out[1 << 16], err[1 << 16];
  size_t out_len, err_len;
  int code; /* exit code, or -1 if it did not exit by itself */
} Run;

static void append(char *buf, size_t *len, int fd, bool *open) {
  char chunk[4096];
  ssize_t n = read(fd, chunk, sizeof chunk);
  if (n <= 0) {
    *open = false;
    return;
  }
  size_t room = (1 << 16) - 1 - *len;
  size_t take = (size_t)n < room ? (size_t)n : room;
  memcpy(buf + *len, chunk, take);
  *len += take;
  buf[*len] = '\0';
}

/* Runs cnnlua with args (NULL-terminated, after the program name) and input on stdin. */
static void run(Run *r, const char *input, const char *const *args) {
  memset(r, 0, sizeof *r);
  int in[2], out[2], err[2];
  if (pipe(in) || pipe(out) || pipe(err)) {
    perror("pipe");
    exit(2);
  }
  pid_t pid = fork();
  if (pid == 0) {
    if (extra_env != NULL) putenv((char *)extra_env);
    dup2(in[0], 0), dup2(out[1], 1), dup2(err[1], 2);
    close(in[0]), close(in[1]), close(out[0]), close(out[1]), close(err[0]), close(err[1]);
    const char *argv[32] = {cnnlua};
    for (int i = 0; args[i] != NULL && i < 30; i++) argv[i + 1] = args[i];
    execv(cnnlua, (char **)argv);
    _exit(127);
  }
  close(in[0]), close(out[1]), close(err[1]);
  /* inputs here are small, far below the pipe's capacity */
  if (input != NULL && write(in[1], input, strlen(input)) < 0) perror("write");
  close(in[1]);

  long deadline = now_ms() + TIMEOUT_MS;
  bool out_open = true, err_open = true;
  while ((out_open || err_open) && now_ms() < deadline) {
    struct pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    if (poll(fds, 2, 100) <= 0) continue;
    if (out_open && fds[0].revents) append(r->out, &r->out_len, out[0], &out_open);
    if (err_open && fds[1].revents) append(r->err, &r->err_len, err[0], &err_open);
  }
  close(out[0]), close(err[0]);
  int status = wait_until(pid, deadline);
  r->code = status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NO_ARGS ((const char *const[]){NULL})

static void test_piped_expression_prints_only_its_value(void) {
  Run r;
  run(&r, "1+2\n", NO_ARGS);
  CHECK(r.code == 0, "exit code %d", r.code);
  CHECK(strcmp(r.out, "3\n") == 0, "stdout was '%s'", r.out);
  CHECK(r.err_len == 0, "stderr was '%s'", r.err);
}

static void test_piped_repl_joins_lines_and_goes_on_after_errors(void) {
  Run r;
  run(&r,
      "function f(x)\nreturn x*2\nend\nf(21)\n"
      "error('bo' .. 'om')\n"
      "=1, 'two'\n"
      "setmetatable({}, {__tostring = function() return 'shown by tostring' end})\n"
      "x = 7\n"
      "x\n",
      NO_ARGS);
  CHECK(r.code == 0, "exit code %d", r.code);
  CHECK(strcmp(r.out, "42\n1\ttwo\nshown by tostring\n7\n") == 0, "stdout was '%s'", r.out);
  CHECK(strstr(r.err, "stdin:1: boom") != NULL, "stderr was '%s'", r.err);
  CHECK(strstr(r.err, "stack traceback") != NULL, "stderr was '%s'", r.err);
  CHECK(strstr(r.err, "[C]: in ?") == NULL, "the REPL's own frames show: '%s'", r.err);
}

/* An expression that calls a module or a Lua function raising at its caller's level (error(msg, 2))
 * was compiled as "return EXPR", a tail call: the message lost its "stdin:1:" */
static void test_piped_repl_errors_of_called_expressions_keep_their_line(void) {
  Run r;
  run(&r,
      "l = cnn.nn.Linear(3, 4)\n"
      "l(cnn.randn(2, 5))\n"
      "function g() error('from g', 2) end\n"
      "g()\n"
      "select('#', 1, nil, nil)\n",
      NO_ARGS);
  CHECK(r.code == 0, "exit code %d", r.code);
  CHECK(strstr(r.err, "stdin:1: Linear: linear: input has 5 features") != NULL, "stderr was '%s'", r.err);
  CHECK(strstr(r.err, "stdin:1: from g") != NULL, "stderr was '%s'", r.err);
  CHECK(strcmp(r.out, "3\n") == 0, "stdout was '%s'", r.out); /* every value still reaches the echo */
  /* an index past the end is raised where the expression closes: that was the wrapper's ")" on a
   * line of its own (stdin:2); a line that ends in a comment is echoed without it (a "--" in a
   * string is no comment) */
  run(&r, "x = cnn.ones(2)\nx[3]\nx[2] -- one\nx[4] -- two\n'a--b' -- three\n", NO_ARGS);
  CHECK(strstr(r.err, "stdin:1: index: index 3 is out of range") != NULL, "stderr was '%s'", r.err);
  CHECK(strstr(r.err, "stdin:1: index: index 4 is out of range") != NULL, "stderr was '%s'", r.err);
  CHECK(strstr(r.err, "stdin:2") == NULL, "stderr was '%s'", r.err);
  CHECK(strcmp(r.out, "1.0\na--b\n") == 0, "stdout was '%s'", r.out);
  /* "=expr" over several lines reads on as "return expr": the wrapper's ")" had landed before the
   * next lines (inside the long string here), so the chunk never ended and took "next" in */
  run(&r, "=[[a\nb]]\n\"next\"\n=(1 +\n2)\n", NO_ARGS);
  CHECK(r.code == 0, "exit code %d", r.code);
  CHECK(strcmp(r.out, "a\nb\nnext\n3\n") == 0, "stdout was '%s'", r.out);
  CHECK(r.err_len == 0, "stderr was '%s'", r.err);
}

static void test_repl_show_hook_replaces_tostring(void) {
  Run r;
  run(&r, "cnn._repl_show = function(v) return '<' .. tostring(v) .. '>' end\n42\n", NO_ARGS);
  CHECK(strcmp(r.out, "<42>\n") == 0, "stdout was '%s'", r.out);
}

static void test_script_gets_arg_and_varargs(void) {
  char script[256];
  snprintf(script, sizeof script, "%s/args.lua", tmpdir);
  write_file(script, "#!/usr/bin/env cnnlua\n"
                     "print(arg[0], arg[-1], #arg, arg[1], arg[2], select('#', ...), ...)\n");
  Run r;
  run(&r, NULL, ARGS(script, "a", "b c"));
  char want[1024];
  snprintf(want, sizeof want, "%s\t%s\t2\ta\tb c\t2\ta\tb c\n", script, cnnlua);
  CHECK(r.code == 0, "exit code %d, stderr '%s'", r.code, r.err);
  CHECK(strcmp(r.out, want) == 0, "stdout was '%s', wanted '%s'", r.out, want);

  run(&r, "print(type(cnn), ...)\n", ARGS("-", "x"));
  CHECK(strcmp(r.out, "table\tx\n") == 0, "script from stdin printed '%s'", r.out);
}

static void test_e_runs_in_order_with_cnn_loaded(void) {
  Run r;
  run(&r, NULL, ARGS("-e", "print(1)", "-eprint(type(cnn))", "-e", "print(3)"));
  CHECK(r.code == 0, "exit code %d", r.code);
  CHECK(strcmp(r.out, "1\ntable\n3\n") == 0, "stdout was '%s'", r.out);
}

static void test_i_keeps_the_script_globals(void) {
  char script[256];
  snprintf(script, sizeof script, "%s/globals.lua", tmpdir);
  write_file(script, "x = 5\n");
  Run r;
  run(&r, "x * 2\n", ARGS("-i", script));
  CHECK(r.code == 0, "exit code %d", r.code);
  CHECK(strcmp(r.out, "10\n") == 0, "stdout was '%s'", r.out);
}

static void test_v_and_h_exit_0(void) {
  Run r;
  run(&r, NULL, ARGS("-v"));
  CHECK(r.code == 0, "-v exit code %d", r.code);
  CHECK(strncmp(r.out, "cnnlua ", 7) == 0 && strstr(r.out, "(Lua 5.4") && strstr(r.out, "OpenBLAS"), "-v printed '%s'",
        r.out);
  run(&r, NULL, ARGS("-h"));
  CHECK(r.code == 0, "-h exit code %d", r.code);
  const char *options[] = {"-e ", "-i ", "-l ", "-v ", "-h ", "-- ", "- "};
  for (size_t i = 0; i < sizeof options / sizeof *options; i++)
    CHECK(strstr(r.out, options[i]) != NULL, "-h does not list '%s'", options[i]);
  /* --help and --version as -h and -v (they were "unrecognized option '--help'") */
  Run l;
  run(&l, NULL, ARGS("--help"));
  CHECK(l.code == 0 && strcmp(l.out, r.out) == 0 && strstr(l.err, "unrecognized") == NULL,
        "--help: exit code %d, stdout '%s', stderr '%s'", l.code, l.out, l.err);
  run(&l, NULL, ARGS("--version"));
  CHECK(l.code == 0 && strncmp(l.out, "cnnlua ", 7) == 0, "--version: exit code %d, stdout '%s'", l.code, l.out);
  run(&l, NULL, ARGS("--helpx"));
  CHECK(l.code == 1 && strstr(l.err, "unrecognized option '--helpx'"), "--helpx: exit code %d, stderr '%s'", l.code,
        l.err);
}

static void test_failures_exit_1_with_a_message(void) {
  char script[256];
  snprintf(script, sizeof script, "%s/fails.lua", tmpdir);
  write_file(script, "local function inner() error('kaput') end\ninner()\n");
  Run r;
  run(&r, NULL, ARGS(script));
  CHECK(r.code == 1, "erroring script: exit code %d", r.code);
  CHECK(strstr(r.err, "cnnlua: ") == r.err && strstr(r.err, "fails.lua:1: kaput"), "erroring script: stderr '%s'",
        r.err);
  CHECK(strstr(r.err, "stack traceback") && strstr(r.err, "in local 'inner'"), "erroring script: no traceback in '%s'",
        r.err);

  run(&r, NULL, ARGS("/nonexistent/missing.lua"));
  CHECK(r.code == 1, "missing script: exit code %d", r.code);
  CHECK(strstr(r.err, "cannot open /nonexistent/missing.lua") != NULL, "missing script: '%s'", r.err);

  run(&r, NULL, ARGS("-e", "x = = 1"));
  CHECK(r.code == 1 && strstr(r.err, "unexpected symbol"), "syntax error: %d '%s'", r.code, r.err);

  run(&r, NULL, ARGS("-z"));
  CHECK(r.code == 1, "unknown option: exit code %d", r.code);
  CHECK(strstr(r.err, "'-z'") && strstr(r.err, "usage:"), "unknown option: '%s'", r.err);

  run(&r, NULL, ARGS("-e"));
  CHECK(r.code == 1 && strstr(r.err, "usage:"), "-e without code: %d '%s'", r.code, r.err);

  run(&r, NULL, ARGS("-e", "os.exit(3)"));
  CHECK(r.code == 3, "os.exit(3): exit code %d", r.code);
}

/* ---- cnnlua on a pseudo-terminal ----------------------------------------------------------- */

typedef struct Pty {
  pid_t pid;
  int fd;
  char buf[1 << 18];
  size_t len, seen; /* expect() looks only at buf[seen..len) */
} Pty;

static Pty *pty_start(const char *history, const char *const *args) {
  Pty *p = calloc(1, sizeof *p);
  struct winsize ws = {.ws_row = 24, .ws_col = 200};
  p->pid = forkpty(&p->fd, NULL, NULL, &ws);
  if (p->pid < 0) {
    perror("forkpty");
    exit(2);
  }
  if (p->pid == 0) {
    setenv("CNNLUA_HISTORY", history, 1);
    setenv("TERM", "xterm", 1);
    if (extra_env != NULL) putenv((char *)extra_env);
    const char *argv[32] = {cnnlua};
    for (int i = 0; args[i] != NULL && i < 30; i++) argv[i + 1] = args[i];
    execv(cnnlua, (char **)argv);
    _exit(127);
  }
  return p;
}

static void pty_send(Pty *p, const char *keys) {
  if (write(p->fd, keys, strlen(keys)) < 0) perror("write to pty");
}

/* Reads what is available within timeout_ms; false once the child has closed the terminal. */
static bool pty_read(Pty *p, int timeout_ms) {
  struct pollfd pfd = {p->fd, POLLIN, 0};
  if (poll(&pfd, 1, timeout_ms) <= 0) return true;
  if (p->len + 4096 > sizeof p->buf) { /* keep the unseen tail only */
    memmove(p->buf, p->buf + p->seen, p->len - p->seen);
    p->len -= p->seen, p->seen = 0;
  }
  ssize_t n = read(p->fd, p->buf + p->len, sizeof p->buf - p->len - 1);
  if (n <= 0) return false; /* EIO: the child exited */
  p->len += (size_t)n;
  p->buf[p->len] = '\0';
  return true;
}

static void print_escaped(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\n') fputs("\\n", stderr);
    else if (c == '\r') fputs("\\r", stderr);
    else if (c < 32 || c == 127) fprintf(stderr, "\\x%02x", c);
    else fputc(c, stderr);
  }
}

/* Waits until needle appears after everything matched before; false (and a report) if it does not. */
static bool pty_expect(Pty *p, const char *needle) {
  long deadline = now_ms() + TIMEOUT_MS;
  for (;;) {
    char *hit = strstr(p->buf + p->seen, needle);
    if (hit != NULL) {
      p->seen = (size_t)(hit - p->buf) + strlen(needle);
      return true;
    }
    if (now_ms() > deadline || !pty_read(p, 50)) {
      failures++;
      fprintf(stderr, "  FAIL: expected '");
      print_escaped(needle, strlen(needle));
      fprintf(stderr, "' in terminal output '");
      print_escaped(p->buf + p->seen, p->len - p->seen);
      fprintf(stderr, "'\n");
      return false;
    }
  }
}

/* Ctrl-D means end of input only once libedit has the terminal in raw mode; typed earlier, the
 * line discipline takes it as its own EOF. The master reports the slave's termios, so wait for
 * ICANON to go off after the prompt shows. */
static void pty_send_ctrl_d(Pty *p) {
  pty_expect(p, "> ");
  long deadline = now_ms() + TIMEOUT_MS;
  struct termios t;
  while (tcgetattr(p->fd, &t) == 0 && (t.c_lflag & ICANON) && now_ms() < deadline) sleep_ms(5);
  pty_send(p, "\x04");
}

/* Reads until the child closes the terminal; returns its exit code (-1: killed or timed out). */
static int pty_finish(Pty *p) {
  long deadline = now_ms() + TIMEOUT_MS;
  while (now_ms() < deadline && pty_read(p, 50))
    ;
  int status = wait_until(p->pid, deadline);
  close(p->fd);
  free(p);
  return status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Output of a finished line is "...\r\n"; a result right after the typed line is "\r\nVALUE\r\n". */
static void test_terminal_repl_echoes_multiline_and_survives_errors(void) {
  Pty *p = pty_start(history, NO_ARGS);
  pty_expect(p, "cnn is loaded");
  pty_expect(p, "> ");
  pty_send(p, "1+1\r");
  pty_expect(p, "\n2\r\n");

  pty_send(p, "function f(x)\r");
  pty_expect(p, ">> ");
  pty_send(p, "return x*2\r");
  pty_expect(p, ">> ");
  pty_send(p, "end\r");
  pty_send(p, "f(21)\r");
  pty_expect(p, "\n42\r\n");

  pty_send(p, "error(\"boom\")\r");
  pty_expect(p, "stdin:1: boom");
  pty_expect(p, "stack traceback");
  pty_send(p, "1+1\r");
  pty_expect(p, "\n2\r\n");

  pty_send(p, "if true then\r");
  pty_expect(p, ">> ");
  pty_send(p, "print(\"ok\") end\r");
  pty_expect(p, "\nok\r\n");

  pty_send(p, "6*7\r");
  pty_expect(p, "\n42\r\n");
  pty_send_ctrl_d(p);
  int code = pty_finish(p);
  CHECK(code == 0, "Ctrl-D: exit code %d", code);

  char *saved = read_file(history);
  CHECK(saved != NULL, "no history file at %s", history);
  if (saved != NULL) {
    CHECK(strstr(saved, "f(21)") && strstr(saved, "6*7"), "history file holds '%s'", saved);
    free(saved);
  }
}

static void test_ctrl_c_interrupts_running_code_and_clears_the_prompt(void) {
  Pty *p = pty_start(history, NO_ARGS);
  pty_expect(p, "> ");
  pty_send(p, "while true do end\r");
  pty_expect(p, "while true do end\r\n");
  sleep_ms(300); /* let the loop run */
  pty_send(p, "\x03");
  pty_expect(p, "interrupted!");
  pty_expect(p, "> ");
  pty_send(p, "1+1\r");
  pty_expect(p, "\n2\r\n");

  /* a line that catches the interrupt and goes on (as hp.search does) is interrupted by the next
   * Ctrl-C too: it killed the session (SIGINT was left at its default until the next line) */
  pty_expect(p, "> ");
  pty_send(p, "print('caught', pcall(function() while true do end end)) while true do end\r");
  sleep_ms(300);
  pty_send(p, "\x03");
  pty_expect(p, "caught\tfalse");
  sleep_ms(300);
  pty_send(p, "\x03");
  pty_expect(p, "interrupted!");
  pty_expect(p, "> ");
  pty_send(p, "2+2\r");
  pty_expect(p, "\n4\r\n");

  /* inside a coroutine: the hook was set on the thread that resumed it, which never ran, so the
   * first Ctrl-C did nothing and the second killed the session */
  pty_expect(p, "> ");
  pty_send(p, "g = coroutine.wrap(function() while true do end end) g()\r");
  sleep_ms(300);
  pty_send(p, "\x03");
  pty_expect(p, "interrupted!");
  pty_expect(p, "> ");
  pty_send(p, "print(coroutine.resume(coroutine.create(function() while true do end end)))\r");
  sleep_ms(300);
  pty_send(p, "\x03");
  pty_expect(p, "false\tinterrupted!");
  pty_expect(p, "> ");
  pty_send(p, "for x in coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end) do io.write(x) end\r");
  pty_expect(p, "123");
  pty_expect(p, "> ");
  pty_send(p, "2+5\r");
  pty_expect(p, "\n7\r\n");

  /* at the prompt Ctrl-C drops the typed text, and the session goes on (twice) */
  pty_expect(p, "> ");
  pty_send(p, "abc");
  pty_expect(p, "abc");
  pty_send(p, "\x03");
  pty_expect(p, "> ");
  pty_send(p, "\x03");
  pty_expect(p, "> ");
  pty_send(p, "3+4\r");
  pty_expect(p, "\n7\r\n");

  /* and inside an unfinished chunk it drops the whole chunk */
  pty_send(p, "for i = 1, 3 do\r");
  pty_expect(p, ">> ");
  pty_send(p, "\x03");
  pty_expect(p, "> ");
  pty_send(p, "2+3\r");
  pty_expect(p, "\n5\r\n");

  pty_send_ctrl_d(p);
  int code = pty_finish(p);
  CHECK(code == 0, "exit code %d after Ctrl-C", code);
}

static void test_window_resize_at_the_prompt_keeps_the_line(void) {
  Pty *p = pty_start(history, NO_ARGS);
  pty_expect(p, "> ");
  pty_send(p, "1+");
  pty_expect(p, "1+");
  struct winsize ws = {.ws_row = 30, .ws_col = 100};
  ioctl(p->fd, TIOCSWINSZ, &ws); /* SIGWINCH to cnnlua, waiting in read() */
  sleep_ms(100);
  pty_send(p, "1\r");
  pty_expect(p, "\n2\r\n");
  pty_send_ctrl_d(p);
  CHECK(pty_finish(p) == 0, "exit code not 0");
}

static void test_history_is_recalled_and_capped(void) {
  /* 1100 entries in libedit's history format; the session must keep the newest 1000 */
  FILE *f = fopen(history, "w");
  fputs("_HiStOrY_V2_\n", f);
  for (int i = 1; i <= 1100; i++) fprintf(f, "n=%d\n", i);
  fputs("6*7\n", f);
  fclose(f);

  Pty *p = pty_start(history, NO_ARGS);
  pty_expect(p, "> ");
  pty_send(p, "\x1b[A\r"); /* up arrow: the last line of the previous session */
  pty_expect(p, "\n42\r\n");
  pty_send(p, "10+1\r");
  pty_expect(p, "\n11\r\n");
  pty_send_ctrl_d(p);
  CHECK(pty_finish(p) == 0, "exit code not 0");

  char *saved = read_file(history);
  if (saved == NULL) {
    CHECK(false, "history file vanished");
    return;
  }
  int lines = 0;
  for (char *c = saved; *c; c++) lines += *c == '\n';
  CHECK(lines <= 1 + 1000, "history file has %d lines", lines);
  CHECK(strstr(saved, "\nn=1\n") == NULL, "the oldest entry was kept");
  size_t len = strlen(saved);
  CHECK(len > 5 && strcmp(saved + len - 5, "10+1\n") == 0, "newest entry is not last");
  free(saved);
}

static void test_i_on_a_terminal_keeps_the_script_globals(void) {
  char script[256];
  snprintf(script, sizeof script, "%s/tty_globals.lua", tmpdir);
  write_file(script, "y = 20\nprint('script ran')\n");
  Pty *p = pty_start(history, ARGS("-i", script));
  pty_expect(p, "script ran");
  pty_expect(p, "cnn is loaded");
  pty_send(p, "y + 1\r");
  pty_expect(p, "\n21\r\n");
  pty_send_ctrl_d(p);
  CHECK(pty_finish(p) == 0, "exit code not 0");
}

/* Whether needle occurs in what the terminal showed between offset `from` and what expect saw. */
static bool pty_shown_between(Pty *p, size_t from, const char *needle) {
  if (from > p->seen) return false;
  char saved = p->buf[p->seen];
  p->buf[p->seen] = '\0';
  bool found = strstr(p->buf + from, needle) != NULL;
  p->buf[p->seen] = saved;
  return found;
}

/* TAB: a unique completion is inserted (a result then proves the whole line was right); an
 * ambiguous one lists the candidates on a second TAB. */
static void test_tab_completes_names_paths_and_methods(void) {
  Pty *p = pty_start(history, NO_ARGS);
  pty_expect(p, "> ");
  pty_send(p, "type(cn\t)\r"); /* cnn */
  pty_expect(p, "\ntable\r\n");
  pty_send(p, "type(cnn.F.con\t)\r"); /* cnn.F.conv2d */
  pty_expect(p, "\nfunction\r\n");
  pty_send(p, "tbl = {alpha = {beta_gamma = 21}}\r");
  pty_send(p, "tbl.alpha.bet\t * 2\r"); /* a dotted path of the user's own */
  pty_expect(p, "\n42\r\n");
  pty_send(p, "retu\t 7\r"); /* a keyword */
  pty_expect(p, "\n7\r\n");

  pty_send(p, "x = cnn.ones(2)\r");
  pty_send(p, "x:res\t(1, 2):size(1)\r"); /* x:reshape */
  pty_expect(p, "\n1\r\n");
  pty_send(p, "x:re\t\t"); /* ambiguous: relu, requires_grad_, reshape, ... listed */
  pty_expect(p, "x:requires_grad_");
  pty_send(p, "lu():sum():item()\r");
  pty_expect(p, "\n2.0\r\n");
  pty_send(p, "type(x.requires_\t)\r"); /* a tensor field after '.' */
  pty_expect(p, "\nboolean\r\n");

  pty_send(p, "m = cnn.nn.Seq\t(cnn.nn.Linear(2, 3))\r"); /* cnn.nn.Sequential */
  pty_send(p, "m:na\t\t");                                /* the first TAB inserts the common part: m:named_ */
  pty_expect(p, "m:named_parameters");
  pty_send(p, "parameters()[1][1]\r");
  pty_expect(p, "\n0.weight\r\n");

  /* completing through a table whose __index raises shows nothing and breaks nothing */
  size_t mark = p->seen;
  pty_send(p, "lazy = setmetatable({}, {__index = function() error('bo' .. 'om') end})\r");
  pty_send(p, "lazy.x.\t\t");
  pty_send(p, "\x15");    /* Ctrl-U: drop the line */
  pty_send(p, "\t3+4\r"); /* TAB at the start of a line indents */
  pty_expect(p, "\n7\r\n");
  CHECK(!pty_shown_between(p, mark, "boom"), "completion showed an error");
  pty_send_ctrl_d(p);
  CHECK(pty_finish(p) == 0, "exit code not 0");
}

static void test_help_and_percent_time_at_the_prompt(void) {
  Pty *p = pty_start(history, NO_ARGS);
  pty_expect(p, "> ");
  pty_send(p, "help(cnn.zeros)\r");
  pty_expect(p, "cnn.zeros(size...|{size}, {dtype=\"float32\", requires_grad=false}) -> Tensor");
  pty_expect(p, "A tensor of the given shape filled with 0.");
  pty_send(p, "help(\"conv2d\")\r");
  pty_expect(p, "cnn.F.conv2d(x, weight, bias, {stride=1");
  pty_send(p, "%time 6 * 7\r");
  pty_expect(p, "wall time: ");
  pty_expect(p, "\n42\r\n");
  pty_send(p, "%timeit -n 3 cnn.ones(4):sum()\r");
  pty_expect(p, "3 runs: median ");
  pty_send(p, "%nope 1\r");
  pty_expect(p, "unknown command '%nope'");
  pty_send(p, "%time error('inside')\r");
  pty_expect(p, "inside");
  pty_send(p, "1+1\r");
  pty_expect(p, "\n2\r\n");
  pty_send_ctrl_d(p);
  CHECK(pty_finish(p) == 0, "exit code not 0");
}

static void test_help_and_time_in_pipes_and_scripts(void) {
  Run r;
  run(&r, "%time 1+1\n%timeit -n 2 nil\n%time local a = 1\nhelp(cnn.ones)\n", NO_ARGS);
  CHECK(r.code == 0, "exit code %d, stderr '%s'", r.code, r.err);
  CHECK(strncmp(r.out, "wall time: ", 11) == 0 && strstr(r.out, "s\n2\n2 runs: median "), "stdout was '%s'", r.out);
  CHECK(strstr(r.out, "cnn.ones(size...|{size}") != NULL, "stdout was '%s'", r.out);
  CHECK(r.err_len == 0, "stderr was '%s'", r.err);

  run(&r, "%timeit -n 0 1\n%timeit\n", NO_ARGS);
  CHECK(strstr(r.err, "%timeit: -n needs a positive number") && strstr(r.err, "%timeit: expected code"),
        "stderr was '%s'", r.err);

  run(&r, NULL, ARGS("-e", "help(cnn.F.relu); print(timeit(function() end, 2).min >= 0, time('3'))"));
  CHECK(r.code == 0, "exit code %d, stderr '%s'", r.code, r.err);
  CHECK(strstr(r.out, "cnn.F.relu(x, inplace=false) -> Tensor\n") && strstr(r.out, "\ntrue\t3\n"), "stdout was '%s'",
        r.out);
}

/* Values show with their contents: tables inline or indented, a sequence of sizes on one line. */
static void test_values_show_their_contents(void) {
  Pty *p = pty_start(history, NO_ARGS);
  pty_expect(p, "> ");
  pty_send(p, "{1, 2, {3, {4}}}\r");
  pty_expect(p, "\n{1, 2, {3, {4}}}\r\n");
  pty_send(p, "t = cnn.zeros(64, 1, 28, 28)\r");
  pty_send(p, "t:size()\r");
  pty_expect(p, "\n{64, 1, 28, 28}\r\n");
  pty_send(p, "t:shape(), #t\r");
  pty_expect(p, "\n{64, 1, 28, 28}\t64\r\n");
  pty_send(p, "{b = {x = 1}, a = 'text', [1] = true}\r");
  pty_expect(p, "\n{true, a = \"text\", b = {x = 1}}\r\n");
  pty_send(p, "loop = {}; loop.me = loop\r");
  pty_send(p, "loop\r");
  pty_expect(p, "{me = <cycle: 0x");
  pty_send(p, "timeit(function() end, 20)\r");
  pty_expect(p, "\n20 runs: median ");
  pty_send_ctrl_d(p);
  CHECK(pty_finish(p) == 0, "exit code not 0");

  Run r; /* the same through a pipe */
  run(&r, "{1, 2, {3, {4}}}\ncnn.ones(2, 3):size()\n", NO_ARGS);
  CHECK(strcmp(r.out, "{1, 2, {3, {4}}}\n{2, 3}\n") == 0, "stdout was '%s'", r.out);
}

/* A chunk typed over several lines is one history entry: Up recalls it whole, and it is saved so. */
static void test_multiline_entry_is_one_history_entry(void) {
  remove(history);
  Pty *p = pty_start(history, NO_ARGS);
  pty_expect(p, "> ");
  pty_send(p, "for i = 1, 2 do\r");
  pty_expect(p, ">> ");
  pty_send(p, "print(i * 10)\r");
  pty_expect(p, ">> ");
  pty_send(p, "end\r");
  pty_expect(p, "\n10\r\n20\r\n");
  pty_expect(p, "> ");
  pty_send(p, "\x1b[A\r"); /* Up: the whole loop, run again */
  pty_expect(p, "\n10\r\n20\r\n");
  pty_send_ctrl_d(p);
  CHECK(pty_finish(p) == 0, "exit code not 0");
  char *saved = read_file(history);
  CHECK(saved != NULL, "no history file");
  if (saved != NULL) {
    /* libedit's file format writes a newline inside an entry as \012 and a blank as \040 */
    CHECK(strcmp(saved, "_HiStOrY_V2_\nfor\\040i\\040=\\0401,\\0402\\040do\\012print(i\\040*\\04010)\\012end\n") == 0,
          "history file holds '%s'", saved);
    free(saved);
  }
}

/* hp.search with worker processes from the prompt: an objective defined there, a random search
 * on 2 workers, then a grid search with another space in the same session, each result printed;
 * a Ctrl-C in a third search stops it, keeps what finished, and the session goes on. */
static void test_hpsearch_at_the_prompt(void) {
  Pty *p = pty_start(history, NO_ARGS);
  pty_expect(p, "> ");
  pty_send(p, "hp = cnn.hpsearch; data = cnn.linspace(0, 1, 11)\r");
  pty_send(p, "function f(p) return (data[p.i] - p.t) ^ 2 end\r");
  pty_send(p, "r = hp.search{space = {i = hp.randint(1, 11), t = 0.3}, trials = 6, workers = 2, seed = 4, "
              "mode = \"min\", objective = f}\r");
  pty_expect(p, "random search, 6 trials; 2 workers");
  pty_expect(p, "[6/6] trial ");
  pty_send(p, "print(#r.trials, r.best.params.i, r.interrupted)\r");
  pty_expect(p, "\n6\t4\tfalse\r\n");
  pty_send(p, "g = hp.search{space = {i = {2, 6, 10}, t = {0.5, 0.9}}, strategy = \"grid\", workers = 2, "
              "mode = \"min\", quiet = true, objective = f}\r");
  pty_send(p, "g\r");
  pty_expect(p, "6 trials (6 ok); best: trial 3, metric = 0 (i=6, t=0.5)");
  pty_send(p, "print(#g.trials, g.best.params.i, g.best.params.t)\r");
  pty_expect(p, "\n6\t6\t0.5\r\n");

  /* Ctrl-C: a search of slow trials stops; the REPL lives on */
  pty_send(p, "s = hp.search{space = {x = hp.uniform(0, 1)}, trials = 50, workers = 2, mode = \"min\", "
              "objective = function(p) local t = os.clock() while os.clock() - t < 0.3 do end return p.x end}\r");
  pty_expect(p, "[2/50] trial");
  pty_send(p, "\x03");
  pty_expect(p, "hpsearch: interrupted: ");
  pty_expect(p, "> ");
  pty_send(p, "print(s.interrupted, s.trials[1].status, s.trials[50].status)\r");
  pty_expect(p, "\ntrue\tok\tpending\r\n");
  pty_send(p, "1+1\r");
  pty_expect(p, "\n2\r\n");
  pty_send_ctrl_d(p);
  CHECK(pty_finish(p) == 0, "exit code not 0");
}

/* The same from `cnnlua -e` and after `cnnlua -i script` (the objective from the script). */
static void test_hpsearch_from_e_and_i(void) {
  Run r;
  run(&r, NULL,
      ARGS("-e", "local hp = cnn.hpsearch; for k = 1, 2 do "
                 "local r = hp.search{space = {x = {1, 2, 3 + k}}, strategy = 'grid', workers = 2, mode = 'max', "
                 "quiet = true, objective = function(p) return p.x * 10 end}; print(r.best.metric) end"));
  CHECK(r.code == 0, "exit code %d, stderr '%s'", r.code, r.err);
  CHECK(strcmp(r.out, "40\n50\n") == 0, "stdout was '%s'", r.out);

  char script[256];
  snprintf(script, sizeof script, "%s/objective.lua", tmpdir);
  write_file(script, "function objective(p) return -(p.x - 2) ^ 2 end\n");
  run(&r,
      "r = cnn.hpsearch.search{space = {x = {0, 1, 2, 3}}, strategy = 'grid', workers = 2, mode = 'max', "
      "quiet = true, objective = objective}\nr.best.params.x, #r.trials\n",
      ARGS("-i", script));
  CHECK(r.code == 0, "exit code %d, stderr '%s'", r.code, r.err);
  CHECK(strcmp(r.out, "2\t4\n") == 0, "stdout was '%s'", r.out);
}

/* A search's status line is redrawn in place on a terminal of its own, and never under a launcher
 * (mpirun, srun), whose terminal is forwarded into a log: there only the trials' lines go out. */
static void test_search_status_line_only_on_a_terminal_of_its_own(void) {
  static const char code[] =
      "local sleep = require('cnn.core').process.sleep; "
      "print(cnn.hpsearch.search{space = {x = {1, 2, 3, 4}}, strategy = 'grid', workers = 2, mode = 'max', "
      "objective = function(p) sleep(0.3) return p.x end})";
  Pty *p = pty_start(history, ARGS("-e", code));
  pty_expect(p, "\r\x1b[Khpsearch: 0/4 done");
  pty_expect(p, "[4/4] trial ");
  CHECK(pty_finish(p) == 0, "exit code not 0");

  extra_env = "SLURM_STEP_ID=0";
  p = pty_start(history, ARGS("-e", code));
  pty_expect(p, "[4/4] trial ");
  pty_expect(p, "4 trials (4 ok); best: trial 4");
  while (pty_read(p, 50)) /* everything it wrote, then the check */
    ;
  CHECK(strstr(p->buf, "\x1b[K") == NULL && strstr(p->buf, "done, ") == NULL, "a status line under a launcher in '%s'",
        p->buf);
  CHECK(pty_finish(p) == 0, "exit code not 0");

  Run r;
  run(&r, NULL, ARGS("-e", "print(cnn.distributed.launched())"));
  CHECK(strcmp(r.out, "true\n") == 0, "launched() under SLURM_STEP_ID printed '%s'", r.out);
  extra_env = NULL;
  run(&r, NULL, ARGS("-e", "print(cnn.distributed.launched())"));
  CHECK(strcmp(r.out, "false\n") == 0, "launched() printed '%s'", r.out);
}

#define RUN(test)                                                       \
  do {                                                                  \
    int before = failures;                                              \
    test();                                                             \
    printf("%s - %s\n", failures == before ? "ok" : "FAIL", #test + 5); \
    fflush(stdout);                                                     \
  } while (0)

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PATH_TO_CNNLUA\n", argv[0]);
    return 2;
  }
  cnnlua = argv[1];
  if (mkdtemp(tmpdir) == NULL) {
    perror("mkdtemp");
    return 2;
  }
  alarm(300); /* a last resort: SIGALRM ends a stuck run as a failure */
  signal(SIGPIPE, SIG_IGN);

  snprintf(history, sizeof history, "%s/history", tmpdir);

  RUN(test_piped_expression_prints_only_its_value);
  RUN(test_piped_repl_joins_lines_and_goes_on_after_errors);
  RUN(test_piped_repl_errors_of_called_expressions_keep_their_line);
  RUN(test_repl_show_hook_replaces_tostring);
  RUN(test_script_gets_arg_and_varargs);
  RUN(test_e_runs_in_order_with_cnn_loaded);
  RUN(test_i_keeps_the_script_globals);
  RUN(test_v_and_h_exit_0);
  RUN(test_failures_exit_1_with_a_message);
  RUN(test_terminal_repl_echoes_multiline_and_survives_errors);
  RUN(test_ctrl_c_interrupts_running_code_and_clears_the_prompt);
  RUN(test_window_resize_at_the_prompt_keeps_the_line);
  RUN(test_history_is_recalled_and_capped);
  RUN(test_i_on_a_terminal_keeps_the_script_globals);
  RUN(test_tab_completes_names_paths_and_methods);
  RUN(test_help_and_percent_time_at_the_prompt);
  RUN(test_help_and_time_in_pipes_and_scripts);
  RUN(test_values_show_their_contents);
  RUN(test_multiline_entry_is_one_history_entry);
  RUN(test_hpsearch_at_the_prompt);
  RUN(test_hpsearch_from_e_and_i);
  RUN(test_search_status_line_only_on_a_terminal_of_its_own);

  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  printf("%s\n", failures == 0 ? "all REPL tests passed" : "REPL tests FAILED");
  return failures == 0 ? 0 : 1;
}
