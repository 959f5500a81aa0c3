/* The autograd engine (see autograd.h). backward() collects the nodes reachable from the roots
 * with an explicit stack (a 10,000-op chain must not recurse 10,000 C frames), counts for each
 * node how many reachable nodes feed it gradients, then runs nodes in that dependency order so
 * each runs once with the sum of its output gradients. */
#include "autograd/autograd.h"
#include "cnn/elementwise.h"
#include "cnn/error.h"
#include "cnn/reduce.h"
#include "core/alloc.h"
#include "core/iter.h"
#include "core/tensor_hooks.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local bool grad_disabled;

/* The tensor core drops and names a tensor's grad_fn through these (tensor.h); installed before
 * the first node exists. */
static void release_hook(struct cnn_node *n) { cnn_ag_node_release(n); }
static const char *name_hook(const struct cnn_node *n) { return n->name; }
static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;
static void install_hooks(void) {
  static const cnn_grad_fn_hooks hooks = {release_hook, name_hook};
  cnn_tensor_set_grad_fn_hooks(&hooks);
}

bool cnn_ag_set_enabled(bool on) {
  bool was = !grad_disabled;
  grad_disabled = !on;
  return was;
}

bool cnn_ag_is_enabled(void) { return !grad_disabled; }

bool cnn_ag_requires(const cnn_tensor *t) { return !grad_disabled && t && t->requires_grad; }

cnn_node *cnn_ag_node_new(const cnn_ag_op *op, int n_inputs, const cnn_tensor *const *inputs, int n_outputs) {
  pthread_once(&hooks_once, install_hooks);
  cnn_node *n = cnn_small_alloc(sizeof *n + op->state_size);
  cnn_edge *edges = cnn_small_alloc((n_inputs > 0 ? (size_t)n_inputs : 1) * sizeof *edges);
  if (!n || !edges) {
    cnn_small_free(n);
    cnn_small_free(edges);
    cnn_error_set("out of memory");
    return NULL;
  }
  n->refcount = 1;
  n->name = op->name;
  n->op = op;
  n->n_inputs = n_inputs;
  n->n_outputs = n_outputs;
  n->edges = edges;
  for (int i = 0; i < n_inputs; i++) {
    const cnn_tensor *t = inputs[i];
    if (!t) continue;
    cnn_edge *e = &edges[i];
    e->dtype = t->dtype;
    e->ndim = t->ndim;
    memcpy(e->size, t->size, sizeof e->size);
    if (!cnn_ag_requires(t)) continue;
    if (t->grad_fn) {
      e->node = cnn_ag_node_retain(t->grad_fn);
      e->output_nr = t->output_nr;
    } else {
      e->leaf = cnn_tensor_retain((cnn_tensor *)t);
    }
  }
  return n;
}

cnn_node *cnn_ag_node_retain(cnn_node *n) {
  if (n) n->refcount++;
  return n;
}

static void release_saved(cnn_node *n) {
  for (int k = 0; k < n->n_saved; k++) {
    cnn_tensor_release(n->saved[k]);
    n->saved[k] = NULL;
  }
  if (!n->released && n->op->free_state) n->op->free_state(n->state);
  n->released = true;
}

/* Releasing a long chain's head must not recurse once per node: nodes whose count drops to zero
 * go on an explicit worklist. */
void cnn_ag_node_release(cnn_node *n) {
  if (!n || --n->refcount > 0) return;
  cnn_node **work = NULL;
  size_t len = 0, cap = 0;
  cnn_node *cur = n;
  for (;;) {
    release_saved(cur);
    for (int i = 0; i < cur->n_inputs; i++) {
      cnn_edge *e = &cur->edges[i];
      cnn_tensor_release(e->leaf);
      cnn_node *next = e->node;
      if (next && --next->refcount == 0) {
        if (len == cap) {
          size_t ncap = cap ? cap * 2 : 16;
          cnn_node **w = realloc(work, ncap * sizeof *w);
          if (!w) abort(); /* cannot report an error from a destructor; out of memory here is fatal */
          work = w;
          cap = ncap;
        }
        work[len++] = next;
      }
    }
    cnn_small_free(cur->edges);
    free(cur->saved);
    free(cur->saved_version);
    cnn_small_free(cur);
    if (len == 0) break;
    cur = work[--len];
  }
  free(work);
}

bool cnn_node_needs_grad(const cnn_node *n, int input) {
  return input < n->n_inputs && (n->edges[input].node || n->edges[input].leaf);
}

int cnn_ag_save(cnn_node *n, int count, const cnn_tensor *const *ts) {
  cnn_tensor **saved = realloc(n->saved, (size_t)(n->n_saved + count) * sizeof *saved);
  if (!saved) return cnn_error_set("out of memory");
  n->saved = saved;
  uint64_t *ver = realloc(n->saved_version, (size_t)(n->n_saved + count) * sizeof *ver);
  if (!ver) return cnn_error_set("out of memory");
  n->saved_version = ver;
  for (int k = 0; k < count; k++) {
    const cnn_tensor *t = ts[k];
    cnn_tensor *a = t ? cnn_tensor_saved_alias(t) : NULL; /* an in-place op may rebase t past it */
    if (t && !a) return -1;
    n->saved[n->n_saved] = a;
    n->saved_version[n->n_saved] = t ? t->storage->version : 0;
    n->n_saved++;
  }
  return 0;
}

int cnn_ag_saved(cnn_node *n, int k, cnn_tensor **out) {
  if (n->released)
    return cnn_error_set("trying to backward through the graph a second time (%s); its saved tensors "
                         "were freed: pass {retain_graph=true} to the first backward",
                         n->name);
  /* an op whose backward reads a slot its record did not keep (a new op's keep list left out):
   * say which, rather than fail later with no message */
  if (k < 0 || k >= n->n_saved)
    return cnn_error_set("%s reads saved tensor %d, but its record kept %d: the op's list of what it saves "
                         "is short",
                         n->name, k, n->n_saved);
  cnn_tensor *t = n->saved[k];
  if (t && t->storage->version != n->saved_version[k])
    return cnn_error_set("a tensor needed for gradient computation (by %s) was modified by an in-place "
                         "operation: it is at version %llu, saved at version %llu",
                         n->name, (unsigned long long)t->storage->version, (unsigned long long)n->saved_version[k]);
  *out = t;
  return 0;
}

void cnn_ag_set_output(cnn_tensor *out, cnn_node *n, int output_nr) {
  cnn_ag_node_release(out->grad_fn);
  out->grad_fn = cnn_ag_node_retain(n);
  out->output_nr = output_nr;
  out->requires_grad = true;
}

cnn_tensor *cnn_ag_detach(const cnn_tensor *t) { return cnn_tensor_alias(t); }

/* ---- backward ---- */

/* The graph of one backward. It holds a reference to every node it lists, so a Lua Function's
 * backward that closes the root (or drops the last tensor holding a node) cannot free a node
 * while it is walked. node->topo is the node's index here; a backward started from inside another
 * (a Function's backward calling backward on a graph sharing nodes) overwrites it, so each graph
 * keeps the value it found and puts it back when it is done. */
typedef struct {
  cnn_node **nodes;   /* reachable nodes (owned references) */
  int *deps;          /* how many reachable nodes still owe gradients to nodes[i] */
  int *prev_topo;     /* nodes[i]->topo before this graph took it */
  cnn_tensor **grads; /* nodes[i]'s output gradient sums, MAX_OUT per node */
  int n, cap;
} graph;

#define MAX_OUT CNN_AG_MAX_OUTPUTS

static int graph_add(graph *g, cnn_node *node) {
  if (g->n == g->cap) {
    int cap = g->cap ? g->cap * 2 : 64;
    cnn_node **nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
    if (!nodes) return cnn_error_set("out of memory");
    g->nodes = nodes;
    int *deps = realloc(g->deps, (size_t)cap * sizeof *deps);
    if (!deps) return cnn_error_set("out of memory");
    g->deps = deps;
    int *prev = realloc(g->prev_topo, (size_t)cap * sizeof *prev);
    if (!prev) return cnn_error_set("out of memory");
    g->prev_topo = prev;
    cnn_tensor **grads = realloc(g->grads, (size_t)cap * MAX_OUT * sizeof *grads);
    if (!grads) return cnn_error_set("out of memory");
    g->grads = grads;
    g->cap = cap;
  }
  g->prev_topo[g->n] = node->topo;
  node->topo = g->n;
  g->nodes[g->n] = cnn_ag_node_retain(node);
  g->deps[g->n] = 0;
  memset(&g->grads[(size_t)g->n * MAX_OUT], 0, MAX_OUT * sizeof *g->grads);
  g->n++;
  return 0;
}

/* Releases the gradients and nodes still held and gives each node back the topo it had (in
 * reverse order, so a node listed twice by nested graphs ends as it began); the arrays stay. */
static void graph_clear(graph *g) {
  for (int i = g->n - 1; i >= 0; i--) {
    g->nodes[i]->topo = g->prev_topo[i];
    for (int k = 0; k < MAX_OUT; k++) cnn_tensor_release(g->grads[(size_t)i * MAX_OUT + k]);
    cnn_ag_node_release(g->nodes[i]);
  }
  g->n = 0;
}

/* The arrays of the last backward on this thread, kept for the next one: a training step's
 * backward otherwise mallocs and frees several KB of them each time (glibc's slow, consolidating
 * path: a third of a tiny op's backward). A backward started from inside another (a Lua
 * Function's backward calling backward) finds them busy and uses arrays of its own. */
static _Thread_local graph spare;
static _Thread_local cnn_node **spare_stack;
static _Thread_local int spare_scap;
static _Thread_local bool spare_busy;

/* *acc += g (taking ownership of g); shapes equal. */
static int accumulate(cnn_tensor **acc, cnn_tensor *g) {
  if (!*acc) {
    *acc = g;
    return 0;
  }
  int rc = cnn_ew_axpy_(*acc, 1.0, g);
  cnn_tensor_release(g);
  return rc;
}

/* True when t is a contiguous float32 tensor nobody else can see or write: our reference is
 * the only one to the view and the view is its storage's only one. */
static bool owned_privately(const cnn_tensor *t) {
  return t->refcount == 1 && t->storage->refcount == 1 && t->dtype == CNN_FLOAT32 && !t->grad && !t->grad_fn &&
         cnn_tensor_is_contiguous(t);
}

/* Brings a gradient to its input's shape and dtype; consumes g, returns a new reference. */
static cnn_tensor *fit_to_input(cnn_tensor *g, const cnn_edge *e) {
  char b1[256], b2[256];
  cnn_tensor *r = cnn_red_sum_to(g, e->ndim, e->size);
  cnn_tensor_release(g);
  if (!r) return NULL;
  if (!((r->ndim == e->ndim) && memcmp(r->size, e->size, sizeof(int64_t) * (size_t)e->ndim) == 0)) {
    cnn_error_set("internal: gradient of shape %s does not fit input of shape %s",
                  cnn_shape_str(r->ndim, r->size, b1, sizeof b1), cnn_shape_str(e->ndim, e->size, b2, sizeof b2));
    cnn_tensor_release(r);
    return NULL;
  }
  /* accumulators are written in place later: never let one alias a saved or user tensor. A fresh
   * kernel output that only we hold (one reference to the view, one to the storage, no overlap)
   * is already private; anything else (a pass-through gout, a view of a saved tensor) is copied. */
  if (owned_privately(r)) return r;
  cnn_tensor *c = cnn_tensor_to_dtype(r, CNN_FLOAT32);
  if (c == r) {
    cnn_tensor_release(c);
    c = cnn_tensor_clone(r);
  }
  cnn_tensor_release(r);
  return c;
}

static int accumulate_leaf(cnn_tensor *leaf, cnn_tensor *g) {
  if (!leaf->grad) {
    leaf->grad = g;
    return 0;
  }
  int rc = cnn_ew_axpy_(leaf->grad, 1.0, g);
  cnn_tensor_release(g);
  return rc;
}

int cnn_ag_backward(int n_roots, cnn_tensor *const *roots, cnn_tensor *const *seeds, bool retain_graph) {
  graph g = {0};
  cnn_node **stack = NULL;
  int sp = 0, scap = 0, rc = -1;
  const bool reuse = !spare_busy;
  if (reuse) {
    spare_busy = true;
    g = spare; /* empty: n is 0 */
    stack = spare_stack, scap = spare_scap;
  }
  bool was_enabled = cnn_ag_set_enabled(false); /* backward computations record nothing */

  /* seeds first: leaf roots take their seed directly */
  for (int r = 0; r < n_roots; r++) {
    cnn_tensor *root = roots[r];
    if (!root->requires_grad) {
      cnn_error_set("tensor %d does not require grad and has no grad_fn", r + 1);
      goto done;
    }
    cnn_tensor *seed;
    if (seeds && seeds[r]) {
      if (!cnn_tensor_same_shape(seeds[r], root)) {
        char b1[256], b2[256];
        cnn_error_set("gradient of shape %s does not match the tensor's shape %s",
                      cnn_shape_str(seeds[r]->ndim, seeds[r]->size, b1, sizeof b1),
                      cnn_shape_str(root->ndim, root->size, b2, sizeof b2));
        goto done;
      }
      seed = cnn_tensor_to_dtype(seeds[r], CNN_FLOAT32);
      if (seed == seeds[r]) {
        cnn_tensor_release(seed);
        seed = cnn_tensor_clone(seeds[r]);
      }
    } else {
      if (cnn_tensor_numel(root) != 1) {
        cnn_error_set("grad can be implicitly created only for one-element outputs; pass a gradient");
        goto done;
      }
      seed = cnn_tensor_full(CNN_FLOAT32, root->ndim, root->size, 1.0);
    }
    if (!seed) goto done;
    if (!root->grad_fn) {
      if (accumulate_leaf(root, seed)) goto done;
      continue;
    }
    cnn_node *node = root->grad_fn;
    if (node->topo < 0 || node->topo >= g.n || g.nodes[node->topo] != node) {
      if (graph_add(&g, node)) {
        cnn_tensor_release(seed);
        goto done;
      }
    }
    if (root->output_nr >= MAX_OUT) {
      cnn_tensor_release(seed);
      cnn_error_set("internal: too many outputs");
      goto done;
    }
    if (accumulate(&g.grads[(size_t)node->topo * MAX_OUT + root->output_nr], seed)) goto done;
  }

  /* discover the reachable graph and count dependencies, iteratively */
  int n_root_nodes = g.n;
  for (int i = 0; i < n_root_nodes; i++) {
    if (sp == scap) {
      scap = scap ? scap * 2 : 256;
      cnn_node **s = realloc(stack, (size_t)scap * sizeof *s);
      if (!s) {
        cnn_error_set("out of memory");
        goto done;
      }
      stack = s;
    }
    stack[sp++] = g.nodes[i];
  }
  while (sp > 0) {
    cnn_node *node = stack[--sp];
    for (int i = 0; i < node->n_inputs; i++) {
      cnn_node *next = node->edges[i].node;
      if (!next) continue;
      bool seen = next->topo >= 0 && next->topo < g.n && g.nodes[next->topo] == next;
      if (!seen) {
        if (graph_add(&g, next)) goto done;
        if (sp == scap) {
          scap = scap ? scap * 2 : 256;
          cnn_node **s = realloc(stack, (size_t)scap * sizeof *s);
          if (!s) {
            cnn_error_set("out of memory");
            goto done;
          }
          stack = s;
        }
        stack[sp++] = next;
      }
      g.deps[next->topo]++;
    }
  }

  /* run in dependency order: a node is ready once every reachable producer of its grads ran */
  if (scap < g.n) {
    cnn_node **s = realloc(stack, (size_t)g.n * sizeof *s);
    if (!s) {
      cnn_error_set("out of memory");
      goto done;
    }
    stack = s;
    scap = g.n;
  }
  sp = 0;
  for (int i = 0; i < g.n; i++)
    if (g.deps[i] == 0) stack[sp++] = g.nodes[i];
  while (sp > 0) {
    cnn_node *node = stack[--sp];
    cnn_tensor **gout = &g.grads[(size_t)node->topo * MAX_OUT];
    if (node->released) {
      cnn_ag_saved(node, 0, &(cnn_tensor *){NULL}); /* sets the "second time" message */
      goto done;
    }
    cnn_tensor *gin_stack[16];
    cnn_tensor **gin = node->n_inputs <= 16 ? gin_stack : calloc((size_t)node->n_inputs, sizeof *gin);
    if (!gin) {
      cnn_error_set("out of memory");
      goto done;
    }
    memset(gin, 0, sizeof(cnn_tensor *) * (size_t)node->n_inputs);
    int brc = node->op->backward(node, gout, gin);
    for (int k = 0; k < node->n_outputs && k < MAX_OUT; k++) {
      cnn_tensor_release(gout[k]);
      gout[k] = NULL;
    }
    if (!retain_graph) release_saved(node);
    for (int i = 0; i < node->n_inputs; i++) {
      cnn_edge *e = &node->edges[i];
      cnn_tensor *gi = gin[i];
      gin[i] = NULL;
      if (brc == 0 && gi && (e->node || e->leaf)) {
        gi = fit_to_input(gi, e);
        if (!gi) brc = -1;
        else if (e->leaf) brc = accumulate_leaf(e->leaf, gi);
        else brc = accumulate(&g.grads[(size_t)e->node->topo * MAX_OUT + e->output_nr], gi);
      } else {
        cnn_tensor_release(gi);
      }
      if (e->node && --g.deps[e->node->topo] == 0) stack[sp++] = e->node;
    }
    if (gin != gin_stack) free(gin);
    if (brc) goto done;
  }
  rc = 0;
done:
  cnn_ag_set_enabled(was_enabled);
  graph_clear(&g);
  if (reuse) {
    spare = g, spare_stack = stack, spare_scap = scap;
    spare_busy = false;
  } else {
    free(g.nodes);
    free(g.deps);
    free(g.prev_topo);
    free(g.grads);
    free(stack);
  }
  return rc;
}

bool cnn_ag_any_requires(int n, const cnn_tensor *const *inputs) {
  for (int i = 0; i < n; i++)
    if (cnn_ag_requires(inputs[i])) return true;
  return false;
}

int cnn_ag_record(cnn_tensor *out, const cnn_ag_op *op, const void *state, int n_inputs,
                  const cnn_tensor *const *inputs, int n_saves, const cnn_tensor *const *saves) {
  if (!out) return -1;
  if (!cnn_ag_any_requires(n_inputs, inputs)) return 0;
  cnn_node *n = cnn_ag_node_new(op, n_inputs, inputs, 1);
  if (!n || (n_saves && cnn_ag_save(n, n_saves, saves))) {
    cnn_ag_node_release(n);
    cnn_tensor_release(out);
    return -1;
  }
  if (op->state_size) memcpy(n->state, state, op->state_size);
  cnn_ag_set_output(out, n, 0);
  cnn_ag_node_release(n); /* out holds it */
  return 0;
}
