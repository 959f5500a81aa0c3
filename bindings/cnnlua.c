/* cnnlua: the executable. One Lua state with the library preloaded as the global `cnn`, a command
 * line read as the standalone `lua` reads it, a script runner and a REPL (libedit on a terminal,
 * plain lines from a pipe) with TAB completion, help(x) and %time / %timeit (their Lua halves are
 * cnn/help.lua and cnn/repl.lua). SIGINT is ours only while Lua code runs or libedit waits for a
 * key; elsewhere it has its default action, so a process stuck outside Lua can still be killed. */

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include <editline/readline.h>
#include <cblas.h> /* openblas_get_config */

#include "core/alloc.h"
#include "dist/dist.h"

int luaopen_cnn_core(lua_State *L); /* bindings/core/lcnn.c */

#define PROGNAME "cnnlua"
#define HISTORY_LINES 1000

static const char usage_text[] =
    "usage: " PROGNAME " [options] [script [args]]\n"
    "Available options are:\n"
    "  -e code   run the Lua string 'code' (may be repeated; runs in order)\n"
    "  -i        enter the REPL after running 'script'\n"
    "  -l name   require library 'name' into global 'name'\n"
    "  -v        show version information (also --version)\n"
    "  -h        show this help (also --help)\n"
    "  --        stop handling options\n"
    "  -         run stdin as a script and stop handling options\n"
    "With no script and no -e, " PROGNAME " starts the REPL; when stdin is not a terminal it reads\n"
    "lines without prompts. The library is the global 'cnn'; help(x), time(f) and timeit(f, n)\n"
    "are globals too. At the prompt TAB completes names, fields and methods, and\n"
    "'%time CODE' / '%timeit [-n N] CODE' time an expression or statements. REPL history goes\n"
    "to $CNNLUA_HISTORY (empty: none) or ~/.cnnlua_history.\n";

/* ---- messages ------------------------------------------------------------------------------ */

static void print_usage(FILE *out, const char *badoption) {
  if (badoption != NULL) {
    if (badoption[1] == 'e' || badoption[1] == 'l') fprintf(out, "%s: '%s' needs an argument\n", PROGNAME, badoption);
    else fprintf(out, "%s: unrecognized option '%s'\n", PROGNAME, badoption);
  }
  fputs(usage_text, out);
  fflush(out);
}

static void print_version(void) {
  /* openblas_get_config() reads like "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64 " */
  char blas[256];
  snprintf(blas, sizeof blas, "%s", openblas_get_config());
  size_t n = strlen(blas);
  while (n > 0 && blas[n - 1] == ' ') blas[--n] = '\0';
  printf("%s %s (%s, %s)\n", PROGNAME, CNN_VERSION, LUA_RELEASE, blas);
  fflush(stdout);
}

/* Prints the error message on top of the stack (it already carries its traceback) and pops it.
 * Inside the REPL the message has no program prefix and loses the trailing "[C]: in ?" frames,
 * which are the REPL's own C functions and say nothing to the user. */
static void report(lua_State *L, bool in_repl) {
  size_t len;
  const char *msg = lua_tolstring(L, -1, &len);
  if (msg == NULL) msg = "(error object is not a string)", len = strlen(msg);
  static const char c_frame[] = "\n\t[C]: in ?";
  const size_t frame_len = sizeof c_frame - 1;
  while (in_repl && len >= frame_len && memcmp(msg + len - frame_len, c_frame, frame_len) == 0) len -= frame_len;
  fflush(stdout); /* keep stdout and stderr in order when both go to one place */
  fprintf(stderr, "%s%.*s\n", in_repl ? "" : PROGNAME ": ", (int)len, msg);
  fflush(stderr);
  lua_pop(L, 1);
}

/* ---- running Lua code ---------------------------------------------------------------------- */

static lua_State *volatile running_L; /* the thread the SIGINT handler interrupts: the innermost running */
static bool in_repl;                  /* the REPL is running a line */

static void on_sigint(int sig);
#define STOP_MASK (LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT)
static void set_signal(int sig, void (*handler)(int));

/* The count hook installed by on_sigint: runs at the next Lua instruction, call or return, where
 * raising an error is safe (a signal handler cannot raise one itself). In the REPL, Ctrl-C is
 * Ctrl-C again from here: code that catches the interrupt and goes on (hp.search returns
 * interrupted = true, the line runs on) must not leave the next one killing the session. */
static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  if (in_repl) set_signal(SIGINT, on_sigint);
  luaL_error(L, "interrupted!");
}

static void set_signal(int sig, void (*handler)(int)) {
  struct sigaction sa;
  sa.sa_handler = handler;
  sa.sa_flags = 0; /* no SA_RESTART: a blocked read() must return EINTR at the prompt */
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, NULL);
}

/* First Ctrl-C asks Lua to stop at its next instruction; a second one, as in lua.c, kills the
 * process: the way out of a C kernel that never returns to Lua. */
static void on_sigint(int sig) {
  set_signal(sig, SIG_DFL);
  lua_sethook(running_L, stop_hook, STOP_MASK, 1);
}

/* ---- Ctrl-C inside coroutines ----
 * A hook belongs to one Lua thread, and on_sigint's on the thread that resumed a coroutine does not
 * run while the coroutine does: a loop inside coroutine.wrap ignored the first Ctrl-C, and the
 * second killed the session. coroutine.resume and the functions coroutine.wrap makes are wrapped
 * so that running_L is the coroutine while it runs. */
/* co returned or yielded to parent: a Ctrl-C that came too late to run in co runs in parent */
static void resumed(lua_State *co, lua_State *parent) {
  running_L = parent;
  if (lua_gethook(co) == stop_hook) {
    lua_sethook(co, NULL, 0, 0);
    lua_sethook(parent, stop_hook, STOP_MASK, 1);
  }
}

/* Calls the function below its arguments with running_L = co meanwhile; raises what it raised. */
static int call_in(lua_State *L, lua_State *co) {
  running_L = co;
  int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
  resumed(co, L);
  if (status != LUA_OK) return lua_error(L);
  return lua_gettop(L);
}

/* coroutine.resume(co, ...): upvalue 1 is Lua's */
static int co_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  if (co == NULL) return luaL_typeerror(L, 1, "thread"); /* here, where the message names resume */
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  return call_in(L, co);
}

/* a function coroutine.wrap made: upvalues Lua's function and its coroutine */
static int co_wrapped(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  return call_in(L, lua_tothread(L, lua_upvalueindex(2)));
}

/* coroutine.wrap(f): upvalue 1 is Lua's; its function keeps its coroutine as its first upvalue */
static int co_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  if (lua_getupvalue(L, -1, 1) == NULL) return 1;
  if (!lua_isthread(L, -1)) {
    lua_pop(L, 1);
    return 1;
  }
  lua_pushcclosure(L, co_wrapped, 2);
  return 1;
}

static void track_coroutines(lua_State *L) {
  lua_getglobal(L, "coroutine");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "resume");
    lua_pushcclosure(L, co_resume, 1);
    lua_setfield(L, -2, "resume");
    lua_getfield(L, -1, "wrap");
    lua_pushcclosure(L, co_wrap, 1);
    lua_setfield(L, -2, "wrap");
  }
  lua_pop(L, 1);
}

/* Converts any error value into "message\nstack traceback:\n..." (runs before the stack unwinds). */
static int message_handler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1; /* an error object that prints itself keeps its own text */
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Calls the function below its narg arguments in protected mode, with tracebacks and Ctrl-C.
 * Stack: (f, args...) -> (results...) or (message). */
static int docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, message_handler);
  lua_insert(L, base);
  running_L = L;
  set_signal(SIGINT, on_sigint);
  int status = lua_pcall(L, narg, nres, base);
  set_signal(SIGINT, SIG_DFL);
  if (lua_gethook(L) == stop_hook) /* a Ctrl-C that came after the code finished */
    lua_sethook(L, NULL, 0, 0);
  lua_remove(L, base);
  return status;
}

static bool run_string(lua_State *L, const char *code) {
  int status = luaL_loadbuffer(L, code, strlen(code), "=(command line)");
  if (status == LUA_OK) status = docall(L, 0, 0);
  if (status != LUA_OK) report(L, false);
  return status == LUA_OK;
}

/* -l name: global name = require(name) */
static bool run_require(lua_State *L, const char *name) {
  lua_getglobal(L, "require");
  lua_pushstring(L, name);
  int status = docall(L, 1, 1);
  if (status != LUA_OK) {
    report(L, false);
    return false;
  }
  lua_setglobal(L, name);
  return true;
}

/* Runs the file fname (NULL: stdin) with the script's arguments, arg[1..#arg], as its `...`. */
static bool run_script(lua_State *L, const char *fname) {
  int status = luaL_loadfile(L, fname); /* skips a first "#!" line */
  if (status == LUA_OK) {
    if (lua_getglobal(L, "arg") != LUA_TTABLE) luaL_error(L, "'arg' is not a table");
    int n = (int)luaL_len(L, -1);
    luaL_checkstack(L, n + 3, "too many arguments to script");
    for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
    lua_remove(L, -n - 1);    /* the arg table */
    status = docall(L, n, 0); /* a script's return values are dropped, as by lua */
  }
  if (status != LUA_OK) report(L, false);
  return status == LUA_OK;
}

/* ---- the Lua state ------------------------------------------------------------------------- */

static bool is_readable(const char *path) { return access(path, R_OK) == 0; }

/* The folder holding cnn/init.lua: an install next to this executable (bin/../share/lua/5.4),
 * else the source tree's scripts/ (a build-tree run), else the configured install folder. */
static void push_lua_dir(lua_State *L) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash != NULL) {
      *slash = '\0';
      const char *dir = lua_pushfstring(L, "%s/../share/lua/5.4", exe);
      char resolved[PATH_MAX];
      const char *init = lua_pushfstring(L, "%s/cnn/init.lua", dir);
      bool found = is_readable(init) && realpath(dir, resolved) != NULL;
      lua_pop(L, 2);
      if (found) {
        lua_pushstring(L, resolved);
        return;
      }
    }
  }
  if (is_readable(CNN_LUA_SRC_DIR "/cnn/init.lua")) lua_pushstring(L, CNN_LUA_SRC_DIR);
  else lua_pushstring(L, CNN_INSTALL_LUA_DIR);
}

/* Standard libraries, cnn.core preloaded, the Lua half on package.path, `cnn` a global. */
static bool open_cnn(lua_State *L) {
  luaL_openlibs(L);
  track_coroutines(L);

  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_cnn_core);
  lua_setfield(L, -2, "cnn.core");
  lua_pop(L, 1);

  lua_getglobal(L, "package");
  push_lua_dir(L);
  lua_getfield(L, -2, "path");
  const char *dir = lua_tostring(L, -2), *old = lua_tostring(L, -1);
  /* a build-tree run also finds what the build generates (cnn/help_data.lua) */
  const char *built = strcmp(dir, CNN_LUA_SRC_DIR) == 0 ? CNN_LUA_BUILD_DIR "/?.lua;" : "";
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s%s", dir, dir, built, old != NULL ? old : "");
  lua_setfield(L, -4, "path");
  lua_pop(L, 3);

  lua_getglobal(L, "require");
  lua_pushliteral(L, "cnn");
  if (docall(L, 1, 1) != LUA_OK) {
    report(L, false);
    return false;
  }
  lua_setglobal(L, "cnn");
  return true;
}

/* Registry keys of cnn.repl's functions: the REPL finds them there, so a script that reassigns
 * the globals time and timeit breaks neither TAB nor %time. */
#define REG_COMPLETE "cnnlua.complete"
#define REG_TIME "cnnlua.time"
#define REG_TIMEIT "cnnlua.timeit"
#define REG_SHOW "cnnlua.show"

/* help = require "cnn.help"; time and timeit from cnn.repl, also kept in the registry. */
static int load_helpers(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cnn.help");
  lua_call(L, 1, 1);
  lua_setglobal(L, "help");
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cnn.repl");
  lua_call(L, 1, 1);
  static const struct {
    const char *field, *key, *global;
  } fns[] = {{"complete", REG_COMPLETE, NULL},
             {"time", REG_TIME, "time"},
             {"timeit", REG_TIMEIT, "timeit"},
             {"show", REG_SHOW, NULL}};
  for (size_t i = 0; i < sizeof fns / sizeof *fns; i++) {
    lua_getfield(L, -1, fns[i].field);
    if (fns[i].global != NULL) {
      lua_pushvalue(L, -1);
      lua_setglobal(L, fns[i].global);
    }
    lua_setfield(L, LUA_REGISTRYINDEX, fns[i].key);
  }
  return 0;
}

/* Helpers that fail to load are reported once; cnnlua goes on without them. */
static void install_helpers(lua_State *L) {
  lua_pushcfunction(L, load_helpers);
  if (docall(L, 0, 0) != LUA_OK) {
    lua_pushfstring(L, "help, completion and timing unavailable: %s", lua_tostring(L, -1));
    lua_remove(L, -2);
    report(L, false);
  }
}

/* arg as lua sets it: arg[0] the script, arg[-1] and below the interpreter and its options,
 * arg[1..] the script's arguments. With no script, arg[0] is the interpreter. */
static void create_arg_table(lua_State *L, char **argv, int argc, int script) {
  lua_createtable(L, argc - script - 1 > 0 ? argc - script - 1 : 0, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

/* ---- reading lines ------------------------------------------------------------------------- */

enum { LINE_OK, LINE_EOF, LINE_INTERRUPTED };

static bool use_editline;  /* stdin is a terminal: libedit, prompts, history */
static char *history_file; /* NULL: history is not saved */
static volatile sig_atomic_t prompt_interrupted, window_resized;

static void on_prompt_signal(int sig) {
  if (sig == SIGINT) prompt_interrupted = 1;
  else window_resized = 1;
}

/* libedit's key reader (rl_getc_function). Ours rather than libedit's so that an interrupted read()
 * is decided here: Ctrl-C hands back '\n' to end the line (read_line then drops the text), a window
 * resize re-measures the terminal and reads on (libedit's reader would give up: end of input).
 * Bytes are assembled into one wide character as libedit's own reader does. */
static int read_key(FILE *in) {
  (void)in;
  mbstate_t state;
  memset(&state, 0, sizeof state);
  for (;;) {
    if (prompt_interrupted) return '\n';
    if (window_resized) {
      window_resized = 0;
      rl_resize_terminal();
    }
    char byte;
    ssize_t n = read(STDIN_FILENO, &byte, 1);
    if (n == 0 || (n < 0 && errno != EINTR)) return EOF;
    if (n < 0) continue;
    wchar_t wc;
    size_t used = mbrtowc(&wc, &byte, 1, &state);
    if (used == (size_t)-2) continue; /* the middle of a multibyte character */
    if (used == (size_t)-1) {
      memset(&state, 0, sizeof state); /* invalid in this locale: dropped, as libedit does */
      continue;
    }
    return (int)wc;
  }
}

/* ---- completion ---------------------------------------------------------------------------- */

static lua_State *completion_L; /* the REPL's state, read by the completer */
static char **candidates;       /* the last TAB's completions (strdup'ed), handed out by the generator */
static size_t n_candidates, next_candidate;

static void clear_candidates(void) {
  for (size_t i = 0; i < n_candidates; i++) free(candidates[i]);
  free(candidates);
  candidates = NULL;
  n_candidates = next_candidate = 0;
}

/* Protected: candidates = cnn.repl.complete(word, _G). Stack: (word as a light userdata). */
static int collect_candidates(lua_State *L) {
  const char *word = lua_touserdata(L, 1);
  if (lua_getfield(L, LUA_REGISTRYINDEX, REG_COMPLETE) != LUA_TFUNCTION) return 0;
  lua_pushstring(L, word);
  lua_pushglobaltable(L);
  lua_call(L, 2, 1);
  size_t n = lua_istable(L, -1) ? lua_rawlen(L, -1) : 0;
  if (n == 0 || (candidates = calloc(n, sizeof *candidates)) == NULL) return 0;
  for (size_t i = 0; i < n; i++) {
    if (lua_rawgeti(L, -1, (lua_Integer)i + 1) == LUA_TSTRING) {
      char *s = strdup(lua_tostring(L, -1));
      if (s != NULL) candidates[n_candidates++] = s;
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* libedit's generator protocol: state 0 starts over; each call returns a malloc'ed match or NULL. */
static char *candidate_generator(const char *text, int state) {
  (void)text;
  if (state == 0) next_candidate = 0;
  return next_candidate < n_candidates ? strdup(candidates[next_candidate++]) : NULL;
}

static char *no_completion(const char *text, int state) {
  (void)text, (void)state;
  return NULL;
}

/* rl_attempted_completion_function: text is the word before the cursor (dots and colons belong
 * to it, see word_breaks), start its offset in the line. cnn.repl.complete finds the matches;
 * any error there means no matches, never a message. A TAB at the start of an empty line
 * indents, so code pasted with tabs keeps them as indentation instead of listing names. */
static char **complete(const char *text, int start, int end) {
  (void)end;
  rl_attempted_completion_over = 1; /* never fall back to file names */
  clear_candidates();
  if (start == 0 && text[0] == '\0') {
    if ((candidates = malloc(sizeof *candidates)) != NULL && (candidates[0] = strdup("  ")) != NULL) n_candidates = 1;
  } else if (completion_L != NULL && lua_checkstack(completion_L, 4)) {
    lua_State *L = completion_L;
    int top = lua_gettop(L);
    lua_pushcfunction(L, collect_candidates);
    lua_pushlightuserdata(L, (void *)text);
    lua_pcall(L, 1, 0, 0);
    lua_settop(L, top);
  }
  if (n_candidates == 0) return NULL;
  return rl_completion_matches(text, candidate_generator);
}

static pid_t history_owner; /* a forked child (an hpsearch trial) that calls exit() saves nothing */

static void save_history(void) {
  if (history_file != NULL && getpid() == history_owner && write_history(history_file) == 0)
    history_truncate_file(history_file, HISTORY_LINES);
}

static void init_line_editing(void) {
  use_editline = true;
  setlocale(LC_CTYPE, "");     /* so UTF-8 keys decode; Lua's own behaviour does not depend on it */
  rl_readline_name = PROGNAME; /* ~/.editrc lines may start with "cnnlua:" */
  rl_catch_signals = 0;        /* signals at the prompt are handled here, see read_key */
  rl_getc_function = read_key;
  /* A word to complete runs back from the cursor to one of these: a Lua operator, bracket,
     * quote or blank. Not '.' or ':', so "cnn.F.con" and "x:res" are one word each. */
  static char word_breaks[] = " \t\n\"\\'`@$><=;|&{(,)+-*/%^~#[]}";
  rl_basic_word_break_characters = word_breaks;
  rl_completer_word_break_characters = word_breaks;
  rl_attempted_completion_function = complete;
  rl_completion_entry_function = no_completion;
  rl_completion_append_character = '\0'; /* "cnn" then "." or ":", never a space */
  using_history();
  stifle_history(HISTORY_LINES);

  const char *env = getenv("CNNLUA_HISTORY"), *home = getenv("HOME");
  if (env != NULL) history_file = env[0] != '\0' ? strdup(env) : NULL;
  else if (home != NULL && home[0] != '\0') {
    size_t size = strlen(home) + sizeof "/.cnnlua_history";
    if ((history_file = malloc(size)) != NULL) snprintf(history_file, size, "%s/.cnnlua_history", home);
  }
  if (history_file != NULL) {
    read_history(history_file); /* a missing file is a first session */
    history_owner = getpid();
    atexit(save_history); /* also runs on os.exit */
  }
}

/* An entry into history, unless empty or the same as the last one; true when added. A multi-line
 * chunk is one entry, its lines joined by newlines (Up recalls it whole). */
static bool remember_line(const char *line) {
  if (!use_editline || line[0] == '\0') return false;
  HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
  if (last != NULL && last->line != NULL && strcmp(last->line, line) == 0) return false;
  add_history(line);
  return true;
}

/* Replaces the entry remember_line added last (*added) by line. */
static void replace_last_line(const char *line, bool *added) {
  if (*added && history_length > 0) {
    HIST_ENTRY *last = remove_history(history_length - 1);
    if (last != NULL) { /* libedit's free_history_entry frees nothing: the entry and its copy are ours */
      free((void *)last->line);
      free(last);
    }
  }
  *added = remember_line(line);
}

/* One line without its newline into *out (free it), or LINE_EOF / LINE_INTERRUPTED. */
static int read_line(const char *prompt, char **out) {
  if (!use_editline) {
    size_t cap = 0;
    char *line = NULL;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
      free(line);
      return LINE_EOF;
    }
    if (n > 0 && line[n - 1] == '\n') line[--n] = '\0';
    *out = line;
    return LINE_OK;
  }
  prompt_interrupted = 0;
  set_signal(SIGINT, on_prompt_signal);
  set_signal(SIGWINCH, on_prompt_signal);
  char *line = readline(prompt);
  set_signal(SIGINT, SIG_DFL);
  set_signal(SIGWINCH, SIG_DFL);
  if (prompt_interrupted) {
    free(line);
    return LINE_INTERRUPTED;
  }
  if (line == NULL) return LINE_EOF;
  *out = line;
  return LINE_OK;
}

/* ---- reading chunks ------------------------------------------------------------------------ */

enum { CHUNK_OK, CHUNK_ERROR, CHUNK_SKIP, CHUNK_EOF };

/* A syntax error at the end of the text means the chunk goes on in the next line. */
static bool is_incomplete(lua_State *L, int status) {
  static const char mark[] = "<eof>";
  size_t len;
  const char *msg = lua_tolstring(L, -1, &len);
  return status == LUA_ERRSYNTAX && len >= sizeof mark - 1 && strcmp(msg + len - (sizeof mark - 1), mark) == 0;
}

/* %time and %timeit: a line starting with '%' is a REPL command ('%' never starts Lua code). */
enum { MAGIC_NONE, MAGIC_TIME, MAGIC_TIMEIT };

/* Parses "%time CODE" or "%timeit [-n N] CODE": *code points into line. On a bad command,
 * pushes the message and returns false. */
static bool parse_magic(lua_State *L, const char *line, int *magic, const char **code, lua_Integer *runs) {
  size_t name_len = strcspn(line + 1, " \t");
  const char *rest = line + 1 + name_len;
  rest += strspn(rest, " \t");
  if (name_len == 4 && strncmp(line + 1, "time", 4) == 0) {
    *magic = MAGIC_TIME;
  } else if (name_len == 6 && strncmp(line + 1, "timeit", 6) == 0) {
    *magic = MAGIC_TIMEIT;
    if (strncmp(rest, "-n", 2) == 0 && (rest[2] == ' ' || rest[2] == '\t')) {
      char *after;
      errno = 0;
      long long n = strtoll(rest + 3, &after, 10);
      if (after == rest + 3 || n < 1 || errno != 0 || (*after != ' ' && *after != '\t' && *after != '\0')) {
        lua_pushliteral(L, "%timeit: -n needs a positive number of runs, as in %timeit -n 100 f(x)");
        return false;
      }
      *runs = (lua_Integer)n;
      rest = after + strspn(after, " \t");
    }
  } else {
    lua_pushfstring(L, "unknown command '%%%s' (the REPL knows %%time CODE and %%timeit [-n N] CODE)",
                    lua_pushlstring(L, line + 1, name_len));
    lua_remove(L, -2);
    return false;
  }
  if (rest[0] == '\0') {
    lua_pushfstring(L, "%%%s: expected code to time, as in %%%s f(x)", *magic == MAGIC_TIME ? "time" : "timeit",
                    *magic == MAGIC_TIME ? "time" : "timeit");
    return false;
  }
  *code = rest;
  return true;
}

/* Calls the compiled code (upvalue 1) with no arguments. Being C, it stands between the timer and
 * the code, so a C function the code tail-calls reports its error without a position, as at the
 * prompt, instead of the timer's line. */
static int call_chunk(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_call(L, 0, LUA_MULTRET);
  return lua_gettop(L);
}

/* The chunk a %time line runs: upvalues (timer, compiled code, runs or nil). Its results are
 * echoed: the code's for %time, the timing for %timeit. */
static int call_magic(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, lua_upvalueindex(2));
  int nargs = 1;
  if (!lua_isnil(L, lua_upvalueindex(3))) {
    lua_pushvalue(L, lua_upvalueindex(3));
    nargs = 2;
  }
  lua_call(L, nargs, LUA_MULTRET);
  return lua_gettop(L);
}

/* Replaces the compiled code on top of the stack by the closure timing it. */
static int wrap_magic(lua_State *L, int magic, lua_Integer runs) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, magic == MAGIC_TIME ? REG_TIME : REG_TIMEIT) != LUA_TFUNCTION) {
    lua_pop(L, 2);
    lua_pushstring(L, magic == MAGIC_TIME ? "%time is unavailable (cnn.repl did not load)"
                                          : "%timeit is unavailable (cnn.repl did not load)");
    return CHUNK_ERROR;
  }
  lua_insert(L, -2);
  lua_pushcclosure(L, call_chunk, 1);
  if (runs > 0) lua_pushinteger(L, runs);
  else lua_pushnil(L);
  lua_pushcclosure(L, call_magic, 3);
  return CHUNK_OK;
}

/* ---- the REPL ------------------------------------------------------------------------------ */

/* An expression typed at the prompt, evaluated in the chunk's own frame and its values returned.
 * ECHO keeps its closing parenthesis on the line, so that an error in the expression is reported
 * at stdin:1; a line that ends in a comment, which swallows it, is compiled without the comment. */
#define ECHO_OPEN "return (function(...) return ... end)("
#define ECHO ECHO_OPEN "%s)"

/* ECHO of the text before the comment that ends code ("x[3] -- why"): at the first "--" where
 * that text compiles (a "--" inside a string leaves the string open, which never does). Leaves
 * the function on the stack and returns true, or leaves nothing. */
static bool load_before_comment(lua_State *L, const char *code) {
  for (const char *c = strstr(code, "--"); c; c = strstr(c + 2, "--")) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, ECHO_OPEN);
    luaL_addlstring(&b, code, (size_t)(c - code));
    luaL_addchar(&b, ')');
    luaL_pushresult(&b);
    size_t len;
    const char *expr = lua_tolstring(L, -1, &len);
    if (luaL_loadbuffer(L, expr, len, "=stdin") == LUA_OK) {
      lua_remove(L, -2);
      return true;
    }
    lua_pop(L, 2);
  }
  return false;
}

/* Reads one chunk: LINE as an expression to echo when that compiles, else the line as statements,
 * reading more lines while the text is incomplete. The expression is compiled as the arguments of
 * a function that returns them (ECHO), not as "return LINE": there a call to a module or a Lua
 * function that raises with error(msg, 2) was a tail call, whose caller's frame (stdin:1) was gone
 * from the message. "=expr" is the expression form too (over several lines, "return expr");
 * "%time CODE" and "%timeit [-n N] CODE" compile CODE the same way and time it.
 * Leaves the function to run (CHUNK_OK) or the error message (CHUNK_ERROR) on the stack. */
static int read_chunk(lua_State *L) {
  char *line;
  int r = read_line("> ", &line);
  if (r != LINE_OK) return r == LINE_EOF ? CHUNK_EOF : CHUNK_SKIP;
  bool added = remember_line(line); /* replaced by the whole chunk when more lines follow */

  int magic = MAGIC_NONE;
  lua_Integer runs = 0;
  const char *code = line;
  if (line[0] == '%' && !parse_magic(L, line, &magic, &code, &runs)) {
    free(line);
    return CHUNK_ERROR;
  }
  const bool eq = code[0] == '=';
  /* %time and %timeit keep "return EXPR": ECHO's closure, made at every run, would be timed too */
  const char *expr = lua_pushfstring(L, magic != MAGIC_NONE ? "return %s" : ECHO, eq ? code + 1 : code);
  if (luaL_loadbuffer(L, expr, strlen(expr), "=stdin") == LUA_OK) {
    lua_remove(L, -2);
    free(line);
    return magic != MAGIC_NONE ? wrap_magic(L, magic, runs) : CHUNK_OK;
  }
  lua_pop(L, 2);
  if (magic == MAGIC_NONE && load_before_comment(L, eq ? code + 1 : code)) {
    free(line);
    return CHUNK_OK;
  }
  /* more lines to come: "=EXPR" reads on as "return EXPR" (ECHO's closing parenthesis would land
   * before the lines that follow), anything else as statements */
  if (eq) lua_pushfstring(L, "return %s", code + 1);
  else lua_pushstring(L, code);
  lua_pushstring(L, line); /* the entry as typed, for history */
  lua_insert(L, -2);
  free(line);

  int status;
  for (;;) { /* stack: entry, text */
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    status = luaL_loadbuffer(L, text, len, "=stdin");
    if (!is_incomplete(L, status)) break;
    char *more;
    r = read_line(">> ", &more);
    if (r == LINE_EOF) break; /* report the incomplete chunk's error */
    lua_pop(L, 1);
    if (r == LINE_INTERRUPTED) {
      lua_pop(L, 2);
      return CHUNK_SKIP;
    }
    lua_pushfstring(L, "%s\n%s", text, more);
    lua_remove(L, -2);
    lua_pushfstring(L, "%s\n%s", lua_tostring(L, -2), more);
    lua_replace(L, -3);
    free(more);
    replace_last_line(lua_tostring(L, -2), &added); /* the chunk so far, one entry */
  }
  lua_remove(L, -2);
  lua_remove(L, -2); /* the entry */
  if (status != LUA_OK) return CHUNK_ERROR;
  return magic != MAGIC_NONE ? wrap_magic(L, magic, runs) : CHUNK_OK;
}

/* Replaces the value at index i by the text the REPL shows for it: cnn._repl_show(v) when the user
 * set one and it returns a string, else cnn.repl.show(v) (tables with their contents), else
 * tostring(v). */
static void to_display(lua_State *L, int i) {
  int top = lua_gettop(L);
  if (lua_getglobal(L, "cnn") == LUA_TTABLE && lua_getfield(L, -1, "_repl_show") == LUA_TFUNCTION) {
    lua_pushvalue(L, i);
    lua_call(L, 1, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      lua_replace(L, i);
      lua_settop(L, top);
      return;
    }
  }
  lua_settop(L, top);
  if (lua_getfield(L, LUA_REGISTRYINDEX, REG_SHOW) == LUA_TFUNCTION) {
    lua_pushvalue(L, i);
    lua_call(L, 1, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      lua_replace(L, i);
      lua_settop(L, top);
      return;
    }
  }
  lua_settop(L, top);
  lua_getglobal(L, "tostring");
  lua_pushvalue(L, i);
  lua_call(L, 1, 1);
  if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "'tostring' must return a string");
  lua_replace(L, i);
}

/* Echo of a chunk's results, called through docall so a failing __tostring or a Ctrl-C in a long
 * print is reported like any error. Values are tab-separated as by print, or one per line when
 * any of them spans lines (tensors). */
static int show_values(lua_State *L) {
  int n = lua_gettop(L);
  luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
  bool multiline = false;
  for (int i = 1; i <= n; i++) {
    to_display(L, i);
    multiline = multiline || strchr(lua_tostring(L, i), '\n') != NULL;
  }
  for (int i = 1; i <= n; i++) {
    size_t len;
    const char *s = lua_tolstring(L, i, &len);
    fwrite(s, 1, len, stdout);
    fputc(i < n ? (multiline ? '\n' : '\t') : '\n', stdout);
  }
  fflush(stdout);
  return 0;
}

static void repl(lua_State *L) {
  completion_L = L;
  if (isatty(STDIN_FILENO)) {
    init_line_editing();
    printf("%s %s (%s) — cnn is loaded; help(x) for help, Ctrl-D to quit\n", PROGNAME, CNN_VERSION, LUA_VERSION);
    fflush(stdout);
  }
  for (;;) {
    cnn_alloc_idle(); /* waiting for the user: memory a loop kept cached past 1 GiB goes back */
    int chunk = read_chunk(L);
    if (chunk == CHUNK_EOF) break;
    if (chunk == CHUNK_SKIP) continue;
    in_repl = true;
    int status = chunk == CHUNK_OK ? docall(L, 0, LUA_MULTRET) : LUA_ERRSYNTAX;
    int n = lua_gettop(L);
    if (status == LUA_OK && n > 0) {
      lua_pushcfunction(L, show_values);
      lua_insert(L, 1);
      status = docall(L, n, 0);
    }
    in_repl = false;
    if (status != LUA_OK) report(L, true);
    lua_settop(L, 0);
  }
  if (use_editline) fputc('\n', stdout); /* the shell's prompt starts on a fresh line after Ctrl-D */
  fflush(stdout);
}

/* ---- the command line ---------------------------------------------------------------------- */

typedef struct Options {
  int script;       /* index of the script in argv, 0 if none */
  bool interactive; /* -i */
  bool version;     /* -v */
  bool help;        /* -h */
  bool has_code;    /* some -e or -l */
  int bad;          /* index of an unusable option, 0 if none */
} Options;

/* Scans options as lua does; -e and -l run later, in order, from argv. */
static Options collect_options(int argc, char **argv) {
  Options o = {0};
  int i;
  for (i = 1; i < argc && argv[i][0] == '-'; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if (strcmp(a, "-") == 0) break; /* stdin is the script */
    /* --help and --version: what users type first */
    if (strcmp(a, "--help") == 0 || strcmp(a, "--version") == 0) {
      *(a[2] == 'h' ? &o.help : &o.version) = true;
      continue;
    }
    if ((a[1] == 'e' || a[1] == 'l') && a[2] == '\0') {
      if (i + 1 >= argc) {
        o.bad = i;
        return o;
      }
      i++; /* -e code */
      o.has_code = true;
    } else if ((a[1] == 'e' || a[1] == 'l')) {
      o.has_code = true; /* -ecode */
    } else if (a[1] == 'i' && a[2] == '\0') {
      o.interactive = true;
    } else if (a[1] == 'v' && a[2] == '\0') {
      o.version = true;
    } else if (a[1] == 'h' && a[2] == '\0') {
      o.help = true;
    } else {
      o.bad = i;
      return o;
    }
  }
  o.script = i < argc ? i : 0;
  return o;
}

static bool run_code_options(lua_State *L, char **argv, int end) {
  for (int i = 1; i < end; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) break;
    if (a[0] != '-' || (a[1] != 'e' && a[1] != 'l')) continue;
    const char *value = a[2] != '\0' ? a + 2 : argv[++i];
    bool ok = a[1] == 'e' ? run_string(L, value) : run_require(L, value);
    if (!ok) return false;
  }
  return true;
}

/* Everything that touches Lua, run in protected mode so that even a memory error is reported. */
static int protected_main(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  const Options *o = lua_touserdata(L, 3);
  lua_settop(L, 0);

  lua_gc(L, LUA_GCGEN, 0, 0); /* as lua.c does, so scripts run alike under both */
  create_arg_table(L, argv, argc, o->script);
  if (!open_cnn(L)) return 0;
  install_helpers(L);
  if (!run_code_options(L, argv, o->script ? o->script : argc)) return 0;
  if (o->script) {
    const char *fname = argv[o->script];
    bool from_stdin = strcmp(fname, "-") == 0 && strcmp(argv[o->script - 1], "--") != 0;
    if (!run_script(L, from_stdin ? NULL : fname)) return 0;
  }
  if (o->interactive || (!o->script && !o->has_code)) repl(L);
  lua_pushboolean(L, 1);
  return 1;
}

int main(int argc, char **argv) {
  Options o = collect_options(argc, argv);
  if (o.bad) {
    print_usage(stderr, argv[o.bad]);
    return EXIT_FAILURE;
  }
  if (o.help) {
    print_usage(stdout, NULL);
    return EXIT_SUCCESS;
  }
  if (o.version) {
    print_version();
    if (!o.script && !o.has_code && !o.interactive) return EXIT_SUCCESS;
  }

  lua_State *L = luaL_newstate();
  if (L) lua_setallocf(L, cnn_lua_alloc, NULL); /* small blocks on the runtime's lists (core/alloc.h) */
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create the Lua state: not enough memory\n", PROGNAME);
    return EXIT_FAILURE;
  }
  lua_pushcfunction(L, protected_main);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  lua_pushlightuserdata(L, &o);
  int status = lua_pcall(L, 3, 1, 0);
  bool ok = status == LUA_OK && lua_toboolean(L, -1);
  if (status != LUA_OK) report(L, false);
  lua_close(L);
  /* A rank whose script failed takes the whole job down rather than leave the others waiting
     * in a collective for it. */
  cnn_dist_finalize(!ok);
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
