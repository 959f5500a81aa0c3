-- cnn.help: help(x) for the REPL and scripts: the signature and a one-line description of every
-- public function, module and class of cnn. Values are found by identity (a reverse map from each
-- function and table to its dotted names, built by walking `cnn` on each call, so lazily loaded
-- parts and later additions count) and names by search (help("conv2d")).
-- Invariant: every function reachable from `cnn` under public names has an entry below, or is a
-- class method whose parent class documents a method of the same name (an override inherits that
-- documentation, as Python's help does). tests/lua/help_spec.lua walks `cnn` and checks it.
-- `cnn` is read from package.loaded when help runs, never required at load time: cnn/init.lua
-- requires this module while `cnn` is still being built.

local help = {}

-- ---- the entries ---------------------------------------------------------------------------
-- name -> {kind = "function" | "module" | "class" | "field", sig = text, doc = one line}.
-- Names are dotted paths from cnn; tensor methods and fields are cnn.Tensor.NAME, class methods
-- CLASS.NAME. A signature shows the call as written (t:reshape, m:forward, cnn.F.conv2d).
local E = {}

local function fn(name, sig, doc) E[name] = {kind = "function", sig = sig, doc = doc} end
local function mod(name, doc) E[name] = {kind = "module", sig = name, doc = doc} end
local function class(name, sig, doc) E[name] = {kind = "class", sig = sig, doc = doc} end
local function field(name, sig, doc) E[name] = {kind = "field", sig = sig, doc = doc} end

-- cnn ------------------------------------------------------------------------------------------
mod("cnn", "deep learning runtime: tensors, autograd, layers, optimisers, data, images, plots")
field("cnn.version", "cnn.version", "the library's version string")
local SHAPE = "size...|{size}"
local CREATE = "{dtype=, requires_grad=}"
fn("cnn.tensor", "cnn.tensor(nested_table|number, " .. CREATE .. ") -> Tensor",
   "a tensor holding the given values (a number makes a 0-d tensor); float32 unless dtype=\"int64\"")
fn("cnn.zeros", "cnn.zeros(" .. SHAPE .. ", " .. CREATE .. ") -> Tensor", "a tensor of the given shape filled with 0")
fn("cnn.ones", "cnn.ones(" .. SHAPE .. ", " .. CREATE .. ") -> Tensor", "a tensor of the given shape filled with 1")
fn("cnn.empty", "cnn.empty(" .. SHAPE .. ", " .. CREATE .. ") -> Tensor",
   "a tensor of the given shape with unspecified values (fill it before reading)")
fn("cnn.full", "cnn.full(size|{size}, value, " .. CREATE .. ") -> Tensor", "a tensor of the given shape filled with value")
fn("cnn.rand", "cnn.rand(" .. SHAPE .. ", {requires_grad=}) -> Tensor",
   "uniform random floats in [0, 1) from cnn's generator (see cnn.manual_seed)")
fn("cnn.randn", "cnn.randn(" .. SHAPE .. ", {requires_grad=}) -> Tensor", "standard normal random floats (mean 0, std 1)")
fn("cnn.randint", "cnn.randint(lo, hi, " .. SHAPE .. ") -> Tensor",
   "random int64 values in lo..hi, both included (like math.random)")
fn("cnn.randperm", "cnn.randperm(n) -> Tensor", "a random permutation of 1..n (int64)")
fn("cnn.zeros_like", "cnn.zeros_like(t, " .. CREATE .. ") -> Tensor", "zeros with t's shape (and dtype unless given)")
fn("cnn.ones_like", "cnn.ones_like(t, " .. CREATE .. ") -> Tensor", "ones with t's shape (and dtype unless given)")
fn("cnn.arange", "cnn.arange(n) | cnn.arange(a, b, step=1) -> Tensor",
   "values from a (0) up to b (n) excluded, by step; int64 when every argument is an integer")
fn("cnn.linspace", "cnn.linspace(a, b, n, " .. CREATE .. ") -> Tensor", "n evenly spaced floats from a to b, both included")
fn("cnn.eye", "cnn.eye(n, m=n, " .. CREATE .. ") -> Tensor", "an n x m matrix with ones on the diagonal")
fn("cnn.cat", "cnn.cat({t1, t2, ...}, dim=1) -> Tensor", "joins tensors along an existing dimension")
fn("cnn.stack", "cnn.stack({t1, t2, ...}, dim=1) -> Tensor", "joins same-shaped tensors along a new dimension")
fn("cnn.allclose", "cnn.allclose(a, b, rtol=1e-5, atol=1e-8) -> boolean",
   "whether |a - b| <= atol + rtol * |b| everywhere (shapes broadcast)")
fn("cnn.matmul", "cnn.matmul(a, b) -> Tensor", "matrix product for 1-d, 2-d and batched 3-d tensors (as torch.matmul)")
fn("cnn.mm", "cnn.mm(a, b) -> Tensor", "product of two 2-d matrices")
fn("cnn.maximum", "cnn.maximum(a, b) -> Tensor", "elementwise maximum of two tensors (broadcasting)")
fn("cnn.minimum", "cnn.minimum(a, b) -> Tensor", "elementwise minimum of two tensors (broadcasting)")
fn("cnn.manual_seed", "cnn.manual_seed(n)", "seeds cnn's generator: same seed and thread count, same numbers")
fn("cnn.get_rng_state", "cnn.get_rng_state() -> Tensor", "the generator's state as a 4-element int64 tensor (for checkpoints)")
fn("cnn.set_rng_state", "cnn.set_rng_state(state)", "restores a state returned by cnn.get_rng_state")
fn("cnn.set_num_threads", "cnn.set_num_threads(n)", "the number of threads the kernels use")
fn("cnn.get_num_threads", "cnn.get_num_threads() -> integer", "the number of threads the kernels use")
fn("cnn.set_conv_algorithm", "cnn.set_conv_algorithm(\"auto\"|\"im2col\")", "direct kernels for stride-1 convolutions (auto) or always im2col + OpenBLAS")
fn("cnn.get_conv_algorithm", "cnn.get_conv_algorithm() -> string", "\"auto\" or \"im2col\" (see cnn.set_conv_algorithm)")
fn("cnn.no_grad", "cnn.no_grad(fn, ...) -> fn's results", "runs fn(...) without recording operations for autograd")
fn("cnn.enable_grad", "cnn.enable_grad(fn, ...) -> fn's results", "runs fn(...) with gradient recording on (inside a no_grad)")
fn("cnn.is_grad_enabled", "cnn.is_grad_enabled() -> boolean", "whether operations are being recorded for autograd")
fn("cnn.set_grad_enabled", "cnn.set_grad_enabled(on) -> previous", "turns gradient recording on or off; returns the previous mode")
fn("cnn.is_tensor", "cnn.is_tensor(x) -> boolean", "whether x is a tensor")
fn("cnn.save", "cnn.save(path, {name=tensor, ...}, {metadata={k=v}})",
   "writes a table of named tensors (a state_dict) as a safetensors file")
fn("cnn.load", "cnn.load(path) -> {name=tensor, ...}, metadata", "reads a safetensors file as a table of tensors")
fn("cnn.wall_time", "cnn.wall_time() -> seconds", "a monotonic clock in seconds, for timings, throughput and ETAs")
fn("cnn.memory_stats", "cnn.memory_stats() -> {live_bytes=, cached_bytes=, gc_threshold=, peak_rss_bytes=}",
   "tensor memory in use and cached by the allocator, and the process's peak RSS")
fn("cnn.empty_cache", "cnn.empty_cache()", "returns the allocator's cached tensor memory to the system")
fn("cnn.isatty", "cnn.isatty(file) -> boolean", "whether a Lua file handle (io.stdout) is a terminal")

-- tensors ------------------------------------------------------------------------------------
class("cnn.Tensor", "Tensor (cnn.tensor, cnn.zeros, ...)",
      "n-d array of float32 or int64 with views, broadcasting math and autograd; 1-based dims and indices")
local function tm(name, sig, doc) fn("cnn.Tensor." .. name, sig, doc) end
field("cnn.Tensor.requires_grad", "t.requires_grad", "whether operations on t are recorded (set with t:requires_grad_())")
field("cnn.Tensor.grad", "t.grad", "the gradient accumulated by backward (nil until one reaches t); assignable")
field("cnn.Tensor.grad_fn", "t.grad_fn", "the name of the op that made t (nil for leaves)")
field("cnn.Tensor.is_leaf", "t.is_leaf", "true when t was not made by a recorded op")
tm("shape", "t:shape() -> {sizes}", "the sizes as a table ({} for 0-d)")
tm("size", "t:size(d) -> integer | t:size() -> {sizes}", "the size of dimension d (negative from the end)")
tm("stride", "t:stride() -> {strides}", "the element stride of each dimension")
tm("dim", "t:dim() -> integer", "the number of dimensions")
tm("numel", "t:numel() -> integer", "the number of elements")
tm("dtype", "t:dtype() -> \"float32\" | \"int64\"", "the element type")
tm("is_contiguous", "t:is_contiguous() -> boolean", "whether the elements are dense in row-major order")
tm("item", "t:item() -> number", "the value of a one-element tensor")
tm("totable", "t:totable() -> nested table", "the values as nested Lua tables")
tm("select", "t:select(d, i) -> Tensor", "the view at index i of dimension d (that dimension removed)")
tm("narrow", "t:narrow(d, start, len) -> Tensor", "the view of len indices of dimension d from start")
tm("transpose", "t:transpose(d1, d2) -> Tensor", "the view with dimensions d1 and d2 swapped")
tm("t", "t:t() -> Tensor", "the transpose of a 2-d tensor (a view)")
tm("permute", "t:permute(d1, d2, ...) -> Tensor", "the view with dimensions reordered")
tm("unsqueeze", "t:unsqueeze(d) -> Tensor", "the view with a size-1 dimension inserted at d")
tm("squeeze", "t:squeeze(d) -> Tensor", "the view without size-1 dimension d (all of them when d is nil)")
tm("flatten", "t:flatten(start_d=1, end_d=-1) -> Tensor", "merges dimensions start_d..end_d into one")
tm("view", "t:view(" .. SHAPE .. ") -> Tensor", "a view with another shape (no copy; -1 infers a size)")
tm("reshape", "t:reshape(" .. SHAPE .. ") -> Tensor", "the same elements in another shape (a view when possible; -1 infers)")
tm("expand", "t:expand(" .. SHAPE .. ") -> Tensor", "a view repeating size-1 dimensions to a larger size (no copy)")
tm("contiguous", "t:contiguous() -> Tensor", "t itself if contiguous, else a contiguous copy")
tm("clone", "t:clone() -> Tensor", "a copy with its own storage (recorded by autograd)")
tm("float", "t:float() -> Tensor", "converted to float32")
tm("long", "t:long() -> Tensor", "converted to int64")
tm("to", "t:to(dtype) -> Tensor", "converted to \"float32\" or \"int64\"")
tm("index_select", "t:index_select(d, idx) -> Tensor", "the entries at the int64 indices idx (1-based) along dimension d")
tm("add", "t:add(other) -> Tensor", "t + other (a tensor or a number; broadcasting)")
tm("sub", "t:sub(other) -> Tensor", "t - other")
tm("mul", "t:mul(other) -> Tensor", "t * other, elementwise")
tm("div", "t:div(other) -> Tensor", "t / other, elementwise")
tm("pow", "t:pow(p) -> Tensor", "t ^ p, elementwise")
tm("neg", "t:neg() -> Tensor", "-t")
tm("exp", "t:exp() -> Tensor", "e ^ t, elementwise")
tm("log", "t:log() -> Tensor", "natural logarithm, elementwise")
tm("sqrt", "t:sqrt() -> Tensor", "square root, elementwise")
tm("abs", "t:abs() -> Tensor", "absolute value, elementwise")
tm("sign", "t:sign() -> Tensor", "-1, 0 or 1 by the sign of each element")
tm("relu", "t:relu() -> Tensor", "max(t, 0), elementwise")
tm("sigmoid", "t:sigmoid() -> Tensor", "1 / (1 + e^-t), elementwise")
tm("tanh", "t:tanh() -> Tensor", "hyperbolic tangent, elementwise")
tm("clamp", "t:clamp(lo, hi) -> Tensor", "each element limited to [lo, hi] (either bound may be nil)")
tm("maximum", "t:maximum(other) -> Tensor", "elementwise maximum with other (broadcasting)")
tm("minimum", "t:minimum(other) -> Tensor", "elementwise minimum with other (broadcasting)")
tm("eq", "t:eq(other) -> Tensor", "1 where t == other, else 0 (float32)")
tm("ne", "t:ne(other) -> Tensor", "1 where t ~= other, else 0")
tm("lt", "t:lt(other) -> Tensor", "1 where t < other, else 0")
tm("le", "t:le(other) -> Tensor", "1 where t <= other, else 0")
tm("gt", "t:gt(other) -> Tensor", "1 where t > other, else 0")
tm("ge", "t:ge(other) -> Tensor", "1 where t >= other, else 0")
tm("add_", "t:add_(other, alpha=1) -> t", "in place: t = t + alpha * other")
tm("sub_", "t:sub_(other) -> t", "in place: t = t - other")
tm("mul_", "t:mul_(other) -> t", "in place: t = t * other")
tm("div_", "t:div_(other) -> t", "in place: t = t / other")
tm("clamp_", "t:clamp_(lo, hi) -> t", "in place: each element limited to [lo, hi]")
tm("fill_", "t:fill_(v) -> t", "in place: every element set to v")
tm("zero_", "t:zero_() -> t", "in place: every element set to 0")
tm("copy_", "t:copy_(src) -> t", "in place: the values of src (broadcast to t's shape)")
tm("uniform_", "t:uniform_(a=0, b=1) -> t", "in place: uniform random values in [a, b)")
tm("normal_", "t:normal_(mean=0, std=1) -> t", "in place: normal random values")
tm("sum", "t:sum(d, keepdim=false) -> Tensor", "sum over dimension d, or over all elements when d is nil")
tm("mean", "t:mean(d, keepdim=false) -> Tensor", "mean over dimension d, or over all elements")
tm("var", "t:var(d, keepdim=false, {unbiased=true}) -> Tensor", "variance over dimension d, or over all elements")
tm("std", "t:std(d, keepdim=false, {unbiased=true}) -> Tensor", "standard deviation over dimension d, or over all elements")
tm("max", "t:max(d, keepdim=false) -> values, indices | t:max() -> Tensor",
   "maximum over dimension d with its 1-based int64 indices, or over all elements")
tm("min", "t:min(d, keepdim=false) -> values, indices | t:min() -> Tensor",
   "minimum over dimension d with its 1-based int64 indices, or over all elements")
tm("argmax", "t:argmax(d, keepdim=false) -> Tensor", "1-based int64 index of the maximum over d (over all when d is nil)")
tm("argmin", "t:argmin(d, keepdim=false) -> Tensor", "1-based int64 index of the minimum over d (over all when d is nil)")
tm("matmul", "t:matmul(other) -> Tensor", "matrix product for 1-d, 2-d and batched 3-d tensors")
tm("mm", "t:mm(other) -> Tensor", "product of two 2-d matrices")
tm("requires_grad_", "t:requires_grad_(on=true) -> t", "makes autograd record operations on t (a leaf)")
tm("detach", "t:detach() -> Tensor", "a view of t outside the graph (no gradient flows through it)")
tm("backward", "t:backward(grad, {retain_graph=false})",
   "accumulates d t / d leaf into each leaf's .grad (grad may be omitted for a one-element t)")

-- cnn.F ---------------------------------------------------------------------------------------
mod("cnn.F", "functional ops: stateless and differentiable (convolution, pooling, activations, losses)")
local POOL = "{stride=k, padding=0, ceil_mode=false}"
fn("cnn.F.conv2d", "cnn.F.conv2d(x, w, b, {stride=1, padding=0, dilation=1, groups=1}) -> Tensor",
   "2-d convolution: x (N, C, H, W), w (O, C/groups, kh, kw), b (O) or nil -> (N, O, oh, ow)")
fn("cnn.F.max_pool2d", "cnn.F.max_pool2d(x, k, {stride=k, padding=0, dilation=1, ceil_mode=false}) -> Tensor",
   "2-d max pooling over k x k windows of (N, C, H, W)")
fn("cnn.F.avg_pool2d", "cnn.F.avg_pool2d(x, k, " .. POOL:sub(1, -2) .. ", count_include_pad=true, divisor_override=}) -> Tensor",
   "2-d average pooling over k x k windows of (N, C, H, W)")
fn("cnn.F.adaptive_avg_pool2d", "cnn.F.adaptive_avg_pool2d(x, {oh, ow}) -> Tensor",
   "average pooling to a fixed (oh, ow) output size")
fn("cnn.F.linear", "cnn.F.linear(x, w, b) -> Tensor", "x w^T + b: x (..., in), w (out, in), b (out) or nil -> (..., out)")
fn("cnn.F.flatten", "cnn.F.flatten(x, start_d=1, end_d=-1) -> Tensor", "merges dimensions start_d..end_d into one")
fn("cnn.F.dropout", "cnn.F.dropout(x, p=0.5, training=true) -> Tensor",
   "zeroes elements with probability p and scales the rest by 1/(1-p) when training")
fn("cnn.F.relu", "cnn.F.relu(x) -> Tensor", "max(x, 0)")
fn("cnn.F.leaky_relu", "cnn.F.leaky_relu(x, negative_slope=0.01) -> Tensor", "x where x > 0, else negative_slope * x")
fn("cnn.F.sigmoid", "cnn.F.sigmoid(x) -> Tensor", "1 / (1 + e^-x)")
fn("cnn.F.tanh", "cnn.F.tanh(x) -> Tensor", "hyperbolic tangent")
fn("cnn.F.softmax", "cnn.F.softmax(x, d) -> Tensor", "e^x normalised to sum to 1 along dimension d")
fn("cnn.F.log_softmax", "cnn.F.log_softmax(x, d) -> Tensor", "log(softmax(x, d)), computed stably")
fn("cnn.F.batch_norm", "cnn.F.batch_norm(x, running_mean, running_var, weight, bias, training=false, momentum=0.1, eps=1e-5, {relu=false}) -> Tensor",
   "normalises each channel of (N, C, ...) by batch (training) or running statistics")
fn("cnn.F.local_response_norm", "cnn.F.local_response_norm(x, size, {alpha=1e-4, beta=0.75, k=1}) -> Tensor",
   "normalises each channel by the activity of its size neighbours (AlexNet's LRN)")
fn("cnn.F.cross_entropy", "cnn.F.cross_entropy(logits, labels, {reduction=\"mean\", label_smoothing=0, weight=, ignore_index=}) -> Tensor",
   "softmax cross-entropy of (N, C) scores against int64 labels 1..C")
fn("cnn.F.nll_loss", "cnn.F.nll_loss(log_probs, labels, {reduction=\"mean\", weight=, ignore_index=}) -> Tensor",
   "negative log-likelihood of (N, C) log-probabilities against int64 labels 1..C")
fn("cnn.F.mse_loss", "cnn.F.mse_loss(a, b, {reduction=\"mean\"}) -> Tensor", "mean (or sum, or none) of squared differences")

-- cnn.nn --------------------------------------------------------------------------------------
mod("cnn.nn", "modules: layers, containers and losses with parameters, buffers and state_dicts")
fn("cnn.nn.is_module", "cnn.nn.is_module(x) -> boolean", "whether x is a module instance (not a class)")
fn("cnn.nn.dir", "cnn.nn.dir(m) -> {names}", "the sorted names reachable on module m: fields, parameters, children, methods")
class("cnn.nn.Module", "cnn.nn.Module:extend(\"Name\") -> class",
      "the base class of every module; derive your own, define init and forward")
local function mm(name, sig, doc) fn("cnn.nn.Module." .. name, sig, doc) end
mm("extend", "cnn.nn.Module:extend(\"Name\") -> class", "a new class deriving from this one; calling it makes an instance")
mm("init", "function Class:init(...)", "the constructor body: cnn.nn.Class(...) calls it with its arguments")
mm("forward", "m:forward(x, ...) -> output", "the module's computation; m(x) calls it")
mm("extra_repr", "m:extra_repr() -> string", "the configuration text tostring(m) shows after the class name")
mm("class_name", "m:class_name() -> string", "the name of the module's class (\"Conv2d\")")
mm("is_a", "m:is_a(class) -> boolean", "whether m is an instance of class or of a class derived from it")
mm("register_parameter", "m:register_parameter(name, t)", "registers leaf tensor t as a parameter (nil removes it)")
mm("register_buffer", "m:register_buffer(name, t, persistent=true)", "registers t as a buffer, saved in state_dict unless not persistent")
mm("add_module", "m:add_module(name, child)", "registers child as a sub-module (nil removes it)")
mm("register_module", "m:register_module(name, child)", "registers child as a sub-module (same as add_module)")
mm("parameters", "m:parameters(recurse=true) -> {tensors}", "the parameters, each tensor once (recurse=false: only m's own)")
mm("named_parameters", "m:named_parameters(prefix, recurse=true) -> {{name, tensor}, ...}",
   "the parameters with PyTorch's dotted names (features.0.weight), in order")
mm("buffers", "m:buffers(recurse=true) -> {tensors}", "the buffers (running statistics and such), each once")
mm("named_buffers", "m:named_buffers(prefix, recurse=true) -> {{name, tensor}, ...}", "the buffers with their dotted names")
mm("children", "m:children() -> {modules}", "the direct sub-modules, each once")
mm("named_children", "m:named_children() -> {{name, module}, ...}", "the direct sub-modules with their names")
mm("modules", "m:modules() -> {modules}", "m and every descendant, pre-order")
mm("named_modules", "m:named_modules(prefix) -> {{name, module}, ...}", "m (\"\") and every descendant with dotted names")
mm("num_parameters", "m:num_parameters() -> integer", "the number of scalars in the parameters (shared ones once)")
mm("apply", "m:apply(fn) -> m", "calls fn on every descendant, then on m (for custom initialisation)")
mm("train", "m:train(on=true) -> m", "sets training mode (dropout and batch norm behave accordingly) recursively")
mm("eval", "m:eval() -> m", "sets evaluation mode recursively (m:train(false))")
mm("requires_grad_", "m:requires_grad_(on=true) -> m", "sets requires_grad on every parameter (false freezes m)")
mm("zero_grad", "m:zero_grad()", "drops every parameter's gradient (p.grad = nil)")
mm("state_dict", "m:state_dict({keep_vars=false}) -> {name=tensor}", "parameters and persistent buffers by dotted name (detached)")
mm("state_dict_keys", "m:state_dict_keys() -> {names}", "the ordered keys of m:state_dict()")
mm("load_state_dict", "m:load_state_dict(sd, {strict=true}) -> missing, unexpected",
   "copies the tensors of sd into the parameters and buffers (all checked before any copy)")
mm("register_forward_pre_hook", "m:register_forward_pre_hook(fn(module, input)) -> handle",
   "fn runs before every forward with the list of arguments; a non-nil return replaces them")
mm("register_forward_hook", "m:register_forward_hook(fn(module, input, output)) -> handle",
   "fn runs after every forward; a non-nil return replaces the output (handle:remove() stops it)")
mm("register_full_backward_hook", "m:register_full_backward_hook(fn(module, grad_input, grad_output)) -> handle",
   "fn runs with the gradients of m's arguments and results; a returned list replaces grad_input")
field("cnn.nn.Module.training", "m.training", "true in training mode, false after m:eval()")

local function layer(name, sig, doc) class("cnn.nn." .. name, "cnn.nn." .. sig, doc) end
layer("Sequential", "Sequential(m1, m2, ...) | cnn.nn.Sequential{m1, m2, ...}",
      "runs its children in order; seq[i] is the i-th (1-based), names count from 0 as in PyTorch")
fn("cnn.nn.Sequential.add", "seq:add(m) -> seq", "appends module m")
fn("cnn.nn.Sequential.append", "seq:append(m) -> seq", "appends module m")
layer("ModuleList", "ModuleList(m1, m2, ...) | cnn.nn.ModuleList{...}", "holds modules in a list (no forward: iterate over it)")
fn("cnn.nn.ModuleList.add", "list:add(m) -> list", "appends module m")
fn("cnn.nn.ModuleList.append", "list:append(m) -> list", "appends module m")
layer("Conv2d", "Conv2d(in_channels, out_channels, kernel_size, {stride=1, padding=0, dilation=1, groups=1, bias=true})",
      "2-d convolution layer: weight (out, in/groups, kh, kw), bias (out); padding may be \"same\" or \"valid\"")
fn("cnn.nn.Conv2d.reset_parameters", "m:reset_parameters()", "re-initialises weight and bias as PyTorch does (kaiming uniform)")
layer("Linear", "Linear(in_features, out_features, {bias=true})", "fully connected layer y = x W^T + b: weight (out, in), bias (out)")
fn("cnn.nn.Linear.reset_parameters", "m:reset_parameters()", "re-initialises weight and bias as PyTorch does")
layer("MaxPool2d", "MaxPool2d(kernel_size, {stride=kernel_size, padding=0, dilation=1, ceil_mode=false})", "2-d max pooling layer")
layer("AvgPool2d", "AvgPool2d(kernel_size, {stride=kernel_size, padding=0, ceil_mode=false, count_include_pad=true, divisor_override=})",
      "2-d average pooling layer")
layer("AdaptiveAvgPool2d", "AdaptiveAvgPool2d(output_size)", "average pooling to a fixed output size (a number or {oh, ow})")
layer("ReLU", "ReLU()", "max(x, 0)")
layer("LeakyReLU", "LeakyReLU(negative_slope=0.01)", "x where x > 0, else negative_slope * x")
layer("Sigmoid", "Sigmoid()", "1 / (1 + e^-x)")
layer("Tanh", "Tanh()", "hyperbolic tangent")
layer("Softmax", "Softmax(dim)", "softmax along dim (1-based: nn.Softmax(2) normalises (N, C) scores)")
layer("LogSoftmax", "LogSoftmax(dim)", "log-softmax along dim")
layer("Dropout", "Dropout(p=0.5)", "zeroes elements with probability p in training mode; the identity in eval mode")
class("cnn.nn._BatchNorm", "(base class of BatchNorm1d and BatchNorm2d)", "batch normalisation with running statistics")
fn("cnn.nn._BatchNorm.reset_running_stats", "m:reset_running_stats()", "running mean 0, running var 1, batches tracked 0")
fn("cnn.nn._BatchNorm.reset_parameters", "m:reset_parameters()", "resets the running statistics, weight 1 and bias 0")
layer("BatchNorm1d", "BatchNorm1d(num_features, {eps=1e-5, momentum=0.1, affine=true, track_running_stats=true})",
      "batch normalisation of (N, C) or (N, C, L) inputs")
layer("BatchNorm2d", "BatchNorm2d(num_features, {eps=1e-5, momentum=0.1, affine=true, track_running_stats=true})",
      "batch normalisation of (N, C, H, W) inputs, per channel")
layer("LocalResponseNorm", "LocalResponseNorm(size, {alpha=1e-4, beta=0.75, k=1})", "local response normalisation across channels")
layer("Flatten", "Flatten(start_dim=2, end_dim=-1)", "merges dimensions start_dim..end_dim (the default keeps the batch dimension)")
layer("Identity", "Identity()", "returns its input unchanged")
layer("CrossEntropyLoss", "CrossEntropyLoss{reduction=\"mean\", label_smoothing=0, weight=, ignore_index=}",
      "loss(logits (N, C), labels (N) int64 1..C): softmax cross-entropy")
layer("NLLLoss", "NLLLoss{reduction=\"mean\", weight=, ignore_index=}", "loss(log-probabilities (N, C), labels 1..C)")
layer("MSELoss", "MSELoss{reduction=\"mean\"}", "loss(a, b): mean of squared differences")

mod("cnn.nn.init", "weight initialisation, in place, as torch.nn.init")
fn("cnn.nn.init.calculate_gain", "cnn.nn.init.calculate_gain(nonlinearity, param) -> number",
   "the recommended gain for a nonlinearity (relu: sqrt(2), tanh: 5/3, ...)")
fn("cnn.nn.init.uniform_", "cnn.nn.init.uniform_(t, a=0, b=1) -> t", "fills t with uniform values in [a, b)")
fn("cnn.nn.init.normal_", "cnn.nn.init.normal_(t, mean=0, std=1) -> t", "fills t with normal values")
fn("cnn.nn.init.constant_", "cnn.nn.init.constant_(t, val) -> t", "fills t with val")
fn("cnn.nn.init.zeros_", "cnn.nn.init.zeros_(t) -> t", "fills t with 0")
fn("cnn.nn.init.ones_", "cnn.nn.init.ones_(t) -> t", "fills t with 1")
fn("cnn.nn.init.xavier_uniform_", "cnn.nn.init.xavier_uniform_(t, gain=1) -> t", "Glorot uniform: U(-a, a), a = gain sqrt(6 / (fan_in + fan_out))")
fn("cnn.nn.init.xavier_normal_", "cnn.nn.init.xavier_normal_(t, gain=1) -> t", "Glorot normal: std = gain sqrt(2 / (fan_in + fan_out))")
fn("cnn.nn.init.kaiming_uniform_", "cnn.nn.init.kaiming_uniform_(t, a=0, mode=\"fan_in\", nonlinearity=\"leaky_relu\") -> t",
   "He uniform: U(-b, b), b = gain sqrt(3 / fan)")
fn("cnn.nn.init.kaiming_normal_", "cnn.nn.init.kaiming_normal_(t, a=0, mode=\"fan_in\", nonlinearity=\"leaky_relu\") -> t",
   "He normal: std = gain / sqrt(fan)")

-- cnn.optim -----------------------------------------------------------------------------------
mod("cnn.optim", "optimisers (SGD, Adam, AdamW, RMSprop, Adagrad) and learning-rate schedules")
class("cnn.optim.Optimizer", "cnn.optim.Optimizer:extend(\"Name\") -> class",
      "the base of the optimisers: parameter groups, state, zero_grad, state_dict")
fn("cnn.optim.Optimizer.extend", "Base:extend(\"Name\") -> class", "a subclass of an optimiser or scheduler class")
fn("cnn.optim.Optimizer.new", "Class:new(params, opts) -> optimizer", "makes an instance (calling the class does this)")
fn("cnn.optim.Optimizer.add_param_group", "opt:add_param_group{params=, lr=, ...}", "adds a group (options not given take the defaults)")
fn("cnn.optim.Optimizer.zero_grad", "opt:zero_grad({set_to_none=true})", "drops every parameter's .grad (or zeroes it in place)")
fn("cnn.optim.Optimizer.state_dict", "opt:state_dict() -> {state=, param_groups=}", "the optimiser's state (momentum buffers, steps) and groups")
fn("cnn.optim.Optimizer.load_state_dict", "opt:load_state_dict(sd)", "restores what opt:state_dict() returned")
field("cnn.optim.Optimizer.lr", "opt.lr", "the first group's learning rate; assigning it sets every group's")
class("cnn.optim.SGD", "cnn.optim.SGD(params, {lr, momentum=0, dampening=0, weight_decay=0, nesterov=false, maximize=false})",
      "stochastic gradient descent, with momentum and Nesterov momentum")
fn("cnn.optim.SGD.step", "opt:step(closure) -> loss", "one update of every parameter that has a .grad")
fn("cnn.optim.SGD.check", "SGD.check(group, where) -> message|nil", "validates a parameter group's options")
class("cnn.optim.Adam", "cnn.optim.Adam(params, {lr=1e-3, betas={0.9, 0.999}, eps=1e-8, weight_decay=0, amsgrad=false, maximize=false})",
      "Adam: adaptive moment estimation")
fn("cnn.optim.Adam.step", "opt:step(closure) -> loss", "one Adam (AdamW) update of every parameter that has a .grad")
fn("cnn.optim.Adam.check", "Adam.check(group, where) -> message|nil", "validates a parameter group's options")
class("cnn.optim.AdamW", "cnn.optim.AdamW(params, {lr=1e-3, betas={0.9, 0.999}, eps=1e-8, weight_decay=1e-2, amsgrad=false, maximize=false})",
      "Adam with decoupled weight decay")
class("cnn.optim.RMSprop", "cnn.optim.RMSprop(params, {lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=false, maximize=false})",
      "RMSprop: each gradient divided by a running root mean square of past gradients")
fn("cnn.optim.RMSprop.step", "opt:step(closure) -> loss", "one RMSprop update of every parameter that has a .grad")
fn("cnn.optim.RMSprop.check", "RMSprop.check(group, where) -> message|nil", "validates a parameter group's options")
class("cnn.optim.Adagrad", "cnn.optim.Adagrad(params, {lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10, maximize=false})",
      "Adagrad: each gradient divided by the root of the sum of its squares so far")
fn("cnn.optim.Adagrad.step", "opt:step(closure) -> loss", "one Adagrad update of every parameter that has a .grad")
fn("cnn.optim.Adagrad.check", "Adagrad.check(group, where) -> message|nil", "validates a parameter group's options")
class("cnn.optim.LRScheduler", "cnn.optim.LRScheduler:extend(\"Name\") -> class", "the base of the epoch-driven learning-rate schedules")
fn("cnn.optim.LRScheduler.init", "LRScheduler.init(sched, opt) -> sched", "shared construction: base lrs from each group, first step")
fn("cnn.optim.LRScheduler.step", "sched:step()", "advances one epoch and sets each group's lr")
fn("cnn.optim.LRScheduler.get_last_lr", "sched:get_last_lr() -> {lrs}", "each group's lr after the last step")
fn("cnn.optim.LRScheduler.state_dict", "sched:state_dict() -> table", "the schedule's state (without the optimiser)")
fn("cnn.optim.LRScheduler.load_state_dict", "sched:load_state_dict(sd)", "restores what sched:state_dict() returned")
class("cnn.optim.StepLR", "cnn.optim.StepLR(opt, {step_size, gamma=0.1})", "lr times gamma every step_size epochs")
fn("cnn.optim.StepLR.new", "StepLR:new(opt, opts) -> sched", "makes an instance (calling the class does this)")
fn("cnn.optim.StepLR.get_lr", "sched:get_lr() -> {lrs}", "the lrs for the current epoch")
class("cnn.optim.CosineAnnealingLR", "cnn.optim.CosineAnnealingLR(opt, {T_max, eta_min=0})",
      "lr follows half a cosine from the base lr down to eta_min over T_max epochs")
fn("cnn.optim.CosineAnnealingLR.new", "CosineAnnealingLR:new(opt, opts) -> sched", "makes an instance (calling the class does this)")
fn("cnn.optim.CosineAnnealingLR.get_lr", "sched:get_lr() -> {lrs}", "the lrs for the current epoch")
class("cnn.optim.ReduceLROnPlateau",
      "cnn.optim.ReduceLROnPlateau(opt, {mode=\"min\", factor=0.1, patience=10, threshold=1e-4, threshold_mode=\"rel\", cooldown=0, min_lr=0, eps=1e-8})",
      "lr times factor when a metric has stopped improving for more than patience epochs")
fn("cnn.optim.ReduceLROnPlateau.new", "ReduceLROnPlateau:new(opt, opts) -> sched", "makes an instance (calling the class does this)")
fn("cnn.optim.ReduceLROnPlateau.step", "sched:step(metric)", "records an epoch's metric (a number or one-element tensor)")
fn("cnn.optim.ReduceLROnPlateau.is_better", "sched:is_better(a, best) -> boolean", "whether metric a improves on best (mode, threshold)")

-- cnn.autograd --------------------------------------------------------------------------------
mod("cnn.autograd", "user-defined differentiable functions and gradient checking")
fn("cnn.autograd.Function", "cnn.autograd.Function{forward=function(ctx, ...) end, backward=function(ctx, grad_out) end, name=} -> op",
   "a callable differentiable op written in Lua; ctx:save_for_backward(...) keeps tensors in ctx.saved")
fn("cnn.autograd.register_backward_callback", "cnn.autograd.register_backward_callback(fn) -> handle",
   "fn() runs after every successful backward(); handle:remove() stops it")
fn("cnn.autograd.gradcheck", "cnn.autograd.gradcheck(fn, inputs, {eps=1e-3, atol=1e-3, rtol=1e-2}) -> true | false, message",
   "compares backward's gradients with central finite differences")

-- cnn.checkpoint ------------------------------------------------------------------------------
mod("cnn.trainer", "the classification training loop of the examples: progress, evaluation, checkpoints, CSV and curves")
fn("cnn.trainer.job", "cnn.trainer.job{distributed=false, batch_size=, seed=} -> job",
   "alone or one MPI rank: job.rank, job.world_size, job.main, job.batch_size (per rank), job.shard, job.test_shard, job.print, job:wrap(model)")
fn("cnn.trainer.fit", "cnn.trainer.fit{model=, optimizer=, loader=, test_loader=, epochs=, out=, checkpoint=, resume=, lr_at=, title=, extra_state=, progress_every=10} -> history, test_accuracy",
   "trains with cross-entropy, evaluates every epoch, saves a resumable checkpoint, writes OUT/metrics.csv and OUT/curves.png")
fn("cnn.trainer.schedule", "cnn.trainer.schedule(\"step\"|\"cosine\", lr, epochs) -> function(epoch) -> lr", "the examples' learning-rate schedules as a function of the epoch alone")
fn("cnn.trainer.evaluate", "cnn.trainer.evaluate(model, loader) -> loss, accuracy", "mean cross-entropy and accuracy over a loader, in eval mode")
mod("cnn.checkpoint", "training state (models, optimisers, epoch, rng) saved as one safetensors file")
fn("cnn.checkpoint.save", "cnn.checkpoint.save(path, state)", "writes a nested table of tensors, numbers, strings and booleans")
fn("cnn.checkpoint.load", "cnn.checkpoint.load(path) -> state", "reads back the table saved by cnn.checkpoint.save")

-- cnn.data ------------------------------------------------------------------------------------
mod("cnn.data", "datasets (MNIST, tensors, image folders), batching and transforms")
field("cnn.data.FASHION_MNIST_DIR", "cnn.data.FASHION_MNIST_DIR", "where data.fashion_mnist looks by default")
fn("cnn.data.idx_load", "cnn.data.idx_load(path) -> Tensor", "an IDX file (raw or .gz) as a tensor (bytes as float 0..255, labels int64)")
fn("cnn.data.cifar10", "cnn.data.cifar10(dir, split=\"train\") -> dataset", "CIFAR-10's binary files in dir: 3x32x32 images in [0, 1], labels 1..10")
fn("cnn.data.mnist", "cnn.data.mnist(dir, split=\"train\") -> dataset",
   "the four MNIST-layout files in dir: 1x28x28 images in [0, 1], labels 1..10")
fn("cnn.data.fashion_mnist", "cnn.data.fashion_mnist(split=\"train\", {dir=}) -> dataset", "the installed Fashion-MNIST, with class names")
class("cnn.data.MNIST", "(made by cnn.data.mnist and cnn.data.fashion_mnist)",
      "an MNIST-layout dataset: #ds, ds:get(i) -> x, y, ds.classes, ds.labels")
fn("cnn.data.MNIST.get", "ds:get(i) -> image, label", "image i as a (1, H, W) float tensor in [0, 1] and its label 1..10")
fn("cnn.data.MNIST.images", "ds:images() -> Tensor", "every image as one (N, 1, H, W) float tensor (a copy, made on demand)")
class("cnn.data.TensorDataset", "cnn.data.TensorDataset(x, y, ...)", "a dataset whose samples are the rows (dim 1) of each tensor")
fn("cnn.data.TensorDataset.get", "ds:get(i) -> x_i, y_i, ...", "the i-th row of every tensor")
class("cnn.data.ImageFolder", "cnn.data.ImageFolder(dir, {transform=, mode=\"rgb\", extensions={\".png\"}})",
      "PNG images in one sub-folder per class (labels 1..C in sorted folder order)")
fn("cnn.data.ImageFolder.get", "ds:get(i) -> image, label", "the i-th image (C, H, W), transformed, and its label")
class("cnn.data.DataLoader", "cnn.data.DataLoader(ds, {batch_size=1, shuffle=false, drop_last=false, seed=, transform=, shard={rank=, world_size=, exact=false}})",
      "batches of a dataset: for x, y in loader:iter() do ... end; #loader batches")
fn("cnn.data.DataLoader.iter", "loader:iter() -> iterator", "an iterator over this epoch's batches x, y")
fn("cnn.data.DataLoader.set_epoch", "loader:set_epoch(e)", "the epoch the next iter() uses for its (seeded) order")
fn("cnn.data.DataLoader.num_samples", "loader:num_samples() -> integer", "the samples this rank sees per epoch")
mod("cnn.data.transforms", "per-batch image transforms (callables) for DataLoader and ImageFolder")
fn("cnn.data.transforms.normalize", "cnn.data.transforms.normalize(mean, std) -> transform", "(x - mean[c]) / std[c] per channel")
fn("cnn.data.transforms.random_crop", "cnn.data.transforms.random_crop(size, {padding=0, fill=0}) -> transform",
   "pads, then crops a random size window per sample")
fn("cnn.data.transforms.random_hflip", "cnn.data.transforms.random_hflip(p=0.5) -> transform", "mirrors each image left-right with probability p")
fn("cnn.data.transforms.compose", "cnn.data.transforms.compose{t1, t2, ...} -> transform", "applies each transform in order")

-- cnn.image -----------------------------------------------------------------------------------
mod("cnn.image", "PNG images as (C, H, W) float tensors in [0, 1]")
fn("cnn.image.load", "cnn.image.load(path, {mode=\"auto\"}) -> Tensor", "a PNG as a (C, H, W) float tensor; mode \"gray\", \"rgb\", \"rgba\"")
fn("cnn.image.save", "cnn.image.save(path, t)", "writes an 8-bit PNG from (H, W), (1|2|3|4, H, W) values in [0, 1]")
fn("cnn.image.grid", "cnn.image.grid(t, {nrow=8, padding=2, normalize=false, value_range=, scale_each=false, pad_value=0}) -> Tensor",
   "tiles (N, C, H, W) images into one picture (filters, feature maps)")

-- cnn.plot ------------------------------------------------------------------------------------
mod("cnn.plot", "line, scatter and panel charts drawn into tensors and written as PNG")
fn("cnn.plot.lines", "cnn.plot.lines{path=, title=, xlabel=, ylabel=, logx=, logy=, series={{name=, x=, y=}, ...}} -> image, layout",
   "a line chart, one line per series")
fn("cnn.plot.scatter", "cnn.plot.scatter{path=, title=, xlabel=, ylabel=, points={{x=, y=, label=}, ...}, best=} -> image, layout",
   "a scatter chart; points[best] drawn as a labelled star")
fn("cnn.plot.panels", "cnn.plot.panels{path=, title=, cols=3, panels={...}} -> image, {panels=}",
   "a grid of small line or scatter charts in one image")
fn("cnn.plot.ticks", "cnn.plot.ticks(lo, hi, max_ticks=6, min_step) -> {lo=, hi=, step=, values=}", "nice 1-2-5 ticks covering [lo, hi]")
fn("cnn.plot.log_ticks", "cnn.plot.log_ticks(lo, hi, max_ticks=6) -> {lo=, hi=, values=, minor=}", "decade ticks for a log axis")
fn("cnn.plot.format_ticks", "cnn.plot.format_ticks(values, step) -> {labels}", "compact tick labels (1e-3, 0.25, 12k)")
fn("cnn.plot.format_number", "cnn.plot.format_number(v) -> string", "a compact label for one number")
field("cnn.plot.palette", "cnn.plot.palette", "the series colours (Okabe-Ito, colour-blind friendly)")

-- cnn.models ----------------------------------------------------------------------------------
mod("cnn.models", "network definitions with PyTorch/torchvision parameter names")
fn("cnn.models.lenet5", "cnn.models.lenet5{num_classes=10, in_channels=1} -> module", "LeNet-5 for 1x28x28 images")
fn("cnn.models.alexnet", "cnn.models.alexnet{num_classes=1000} -> module", "AlexNet (2012) for 3x227x227 images, with LRN and dropout")
fn("cnn.models.alexnet_cifar", "cnn.models.alexnet_cifar{num_classes=10} -> module", "AlexNet-style network for 3x32x32 images")
fn("cnn.models.resnet", "cnn.models.resnet{depth=18|34|50, num_classes=1000} -> module", "ResNet in the ImageNet layout (3x224x224)")
fn("cnn.models.resnet_cifar", "cnn.models.resnet_cifar{depth=20|32|44|56|110, num_classes=10} -> module",
   "ResNet for 3x32x32 images (He et al. 2016)")

-- cnn.hpsearch --------------------------------------------------------------------------------
mod("cnn.hpsearch", "hyperparameter search: grid, random and ASHA over a space")
fn("cnn.hpsearch.choice", "hp.choice{v1, v2, ...} -> space", "one of the listed values")
fn("cnn.hpsearch.uniform", "hp.uniform(a, b) -> space", "a float uniform in [a, b]")
fn("cnn.hpsearch.loguniform", "hp.loguniform(a, b) -> space", "a float whose log is uniform in [log a, log b]")
fn("cnn.hpsearch.randint", "hp.randint(a, b) -> space", "an integer in a..b")
fn("cnn.hpsearch.search", "hp.search{space=, objective=function(params, report) end, strategy=\"grid\"|\"random\"|\"asha\", trials=, workers=, seed=, metric=, mode=, log=} -> result",
   "runs the trials; result.best, result.trials, result:table(), result:plot(path)")
fn("cnn.hpsearch.is_pruned", "hp.is_pruned(err) -> boolean", "whether an error raised inside an objective is ASHA stopping the trial (rethrow it)")
fn("cnn.hpsearch.Result.new", "hp.Result.new{trials=, names=, metric=, mode=, ...} -> result",
   "builds a result from trial records (hp.search does this)")
fn("cnn.hpsearch.Result.ranked", "result:ranked() -> {trial, ...}", "finished trials, best first")
fn("cnn.hpsearch.Result.format", "hp.Result.format(v) -> string", "a value as the table shows it (%.4g for floats)")
fn("cnn.hpsearch.Result.table", "result:table() -> string", "the trials ranked, as an aligned text table")
fn("cnn.hpsearch.Result.csv", "result:csv(path)", "writes every trial as a CSV row")
fn("cnn.hpsearch.Result.plot", "result:plot(path, {...})", "a PNG: the metric against each parameter, best marked")

-- cnn.distributed -----------------------------------------------------------------------------
mod("cnn.distributed", "data-parallel training over MPI ranks (numbered from 0)")
fn("cnn.distributed.init", "dist.init()", "joins the MPI world (a world of size 1 when not launched by MPI)")
fn("cnn.distributed.rank", "dist.rank() -> integer", "this process's rank, from 0")
fn("cnn.distributed.world_size", "dist.world_size() -> integer", "the number of ranks")
fn("cnn.distributed.is_initialized", "dist.is_initialized() -> boolean", "whether dist.init() has run")
fn("cnn.distributed.barrier", "dist.barrier()", "waits until every rank gets here")
fn("cnn.distributed.all_reduce", "dist.all_reduce(t, {op=\"sum\"|\"mean\"|\"max\"|\"min\"})", "combines t across ranks, in place")
fn("cnn.distributed.broadcast", "dist.broadcast(t, {root=0})", "copies root's t to every rank, in place")
fn("cnn.distributed.all_gather", "dist.all_gather(t) -> {tensors}", "every rank's t, in rank order")
fn("cnn.distributed.DataParallel", "dist.DataParallel(model, {bucket_cap_mb=25}) -> dp",
   "broadcasts parameters and buffers from rank 0; averages gradients in buckets after each backward. "
   .. "dp(x) runs model; dp:no_sync(fn) accumulates without averaging; dp:sync_gradients(); dp.module; dp.stats")
fn("cnn.distributed.backend", "dist.backend() -> \"mpi\"|\"none\", has_mpi", "how this process talks to the others, and whether the build has MPI")
fn("cnn.distributed.is_available", "dist.is_available() -> boolean", "whether this build can join an MPI job")
fn("cnn.distributed.is_data_parallel", "dist.is_data_parallel(x) -> boolean", "whether x is a DataParallel wrapper")

-- the REPL helpers ----------------------------------------------------------------------------
mod("cnn.help", "help(x): signatures and one-line descriptions of cnn's functions, modules and classes")
fn("cnn.help.show", "help(x) | help(\"name\") | help()",
   "prints help for a value, searches by name, or prints an overview")
fn("cnn.help.text", "cnn.help.text(x) -> string", "the text help(x) prints")
fn("cnn.help.lookup", "cnn.help.lookup(v) -> name, entry | nil", "the documented dotted name of a function or table, and its entry")
fn("cnn.help.entry", "cnn.help.entry(name) -> {kind=, sig=, doc=} | nil", "the entry of a dotted name")
fn("cnn.help.names", "cnn.help.names() -> {names}", "every documented dotted name, sorted")
fn("cnn.help.search", "cnn.help.search(text) -> {names}", "documented names matching text (exact last part first, then substrings)")
mod("cnn.repl", "the REPL's helpers: completion and timing (time and timeit are globals in cnnlua)")
fn("cnn.repl.time", "time(fn | \"code\", ...) -> results",
   "runs fn(...) (or the code) once, prints the wall time and returns the results; %time CODE at the prompt")
fn("cnn.repl.timeit", "timeit(fn | \"code\", n) -> median, min",
   "runs it n times (default: about 1 s worth, at least 3), prints median and min; %timeit [-n N] CODE")
fn("cnn.repl.complete", "cnn.repl.complete(word, env=_G) -> {candidates}",
   "tab-completion candidates for a name, a dotted path or a method after ':'")

-- Classes whose instances carry only a metatable __name (not reachable from cnn by a path).
local INSTANCE_CLASS = {
  MNIST = "cnn.data.MNIST", TensorDataset = "cnn.data.TensorDataset", ImageFolder = "cnn.data.ImageFolder",
  DataLoader = "cnn.data.DataLoader", ["cnn.autograd.Function"] = "cnn.autograd.Function",
}

-- ---- finding values ------------------------------------------------------------------------

local function get_cnn() return package.loaded.cnn end

local core = require "cnn.core"
local tensor_mt = getmetatable(core.zeros(0))
local function is_tensor(v) return type(v) == "userdata" and getmetatable(v) == tensor_mt end

local function is_module(v)
  local mt = type(v) == "table" and getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__cnn_module") == true
end

-- The parent class of a class table: nn classes keep it in `super`, optim classes behind their
-- metatable's __index (a table).
local function parent_class(c)
  local s = rawget(c, "super")
  if type(s) == "table" then return s end
  local mt = getmetatable(c)
  local up = type(mt) == "table" and rawget(mt, "__index")
  return type(up) == "table" and up or nil
end

-- The reverse map: value -> list of dotted names (breadth first, so the shortest name comes first),
-- and for functions the tables and keys they were found under (for inherited documentation).
local function build_map()
  local names, owners = {}, {}
  local queue, head = {}, 1
  local function add(v, name, owner, key)
    local known = names[v]
    if known == nil then
      known = {}
      names[v] = known
      if type(v) == "table" then queue[#queue + 1] = {v, name} end
    end
    known[#known + 1] = name
    if owner ~= nil and type(v) == "function" then
      local o = owners[v] or {}
      owners[v] = o
      o[#o + 1] = {owner, key}
    end
  end
  local cnn = get_cnn()
  if type(cnn) == "table" then add(cnn, "cnn") end
  for _, extra in ipairs({"cnn.help", "cnn.repl"}) do
    local m = package.loaded[extra]
    if m ~= nil and names[m] == nil then add(m, extra) end
  end
  while head <= #queue do
    local t, path = queue[head][1], queue[head][2]
    head = head + 1
    if #path < 200 then
      local keys = {}
      for k, v in next, t do
        if type(k) == "string" and k:sub(1, 2) ~= "__" and (type(v) == "table" or type(v) == "function") then
          keys[#keys + 1] = k
        end
      end
      table.sort(keys)
      for _, k in ipairs(keys) do
        local v = rawget(t, k)
        local name = path .. "." .. k
        -- a parent class reached only through `super` is named after its class name
        if k == "super" and names[v] == nil and type(rawget(v, "__name")) == "string" then
          name = path:match("^(.*)%.[^.]*$") .. "." .. rawget(v, "__name")
        end
        add(v, name, t, k)
      end
      -- constructor tables whose metatable's __index is the instances' class (data.DataLoader)
      local mt = getmetatable(t)
      local idx = type(mt) == "table" and rawget(mt, "__index")
      if type(idx) == "table" and names[idx] == nil then add(idx, path) end
    end
  end
  return names, owners
end

-- The documented name of function f: one of its own names, else a parent class's method of the
-- same name (an override), searched up each class it was found in.
local function function_entry(f, names, owners)
  for _, n in ipairs(names[f] or {}) do
    if E[n] then return n, E[n] end
  end
  for _, ok in ipairs(owners[f] or {}) do
    local c, key = parent_class(ok[1]), ok[2]
    local depth = 0
    while c ~= nil and depth < 50 do
      for _, cn in ipairs(names[c] or {}) do
        local n = cn .. "." .. key
        if E[n] then return n, E[n] end
      end
      c, depth = parent_class(c), depth + 1
    end
  end
  return nil
end

local function table_entry(t, names)
  for _, n in ipairs(names[t] or {}) do
    if E[n] then return n, E[n] end
  end
  return nil
end

function help.lookup(v)
  local names, owners = build_map()
  if type(v) == "function" then return function_entry(v, names, owners) end
  if type(v) == "table" then return table_entry(v, names) end
  return nil
end

function help.entry(name)
  local e = E[name]
  if e == nil then return nil end
  return {kind = e.kind, sig = e.sig, doc = e.doc}
end

function help.names()
  local out = {}
  for k in pairs(E) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local function last_part(name) return name:match("([^.]+)$") end
local function is_name(s) return s:match("^[%a_][%w_]*$") ~= nil end

function help.search(text)
  if type(text) ~= "string" then error("help.search: expected a string, got " .. type(text), 2) end
  local q = text:lower()
  local exact, partial, described = {}, {}, {}
  for name, e in pairs(E) do
    local short = last_part(name):lower()
    if name:lower() == q or short == q then
      exact[#exact + 1] = name
    elseif name:lower():find(q, 1, true) then
      partial[#partial + 1] = name
    elseif e.doc:lower():find(q, 1, true) or e.sig:lower():find(q, 1, true) then
      described[#described + 1] = name
    end
  end
  table.sort(exact)
  table.sort(partial)
  table.sort(described)
  local out = {}
  for _, list in ipairs({exact, partial, described}) do
    for _, n in ipairs(list) do out[#out + 1] = n end
  end
  return out, #exact, #partial
end

-- ---- formatting ----------------------------------------------------------------------------

local function entry_text(_, e)
  return e.sig .. "\n  " .. e.doc
end

-- "  name   one-liner" lines for the given short names.
local function listing(rows)
  local width = 0
  for _, r in ipairs(rows) do width = math.max(width, #r[1]) end
  width = math.min(width, 24)
  local lines = {}
  for _, r in ipairs(rows) do
    local pad = string.rep(" ", math.max(1, width - #r[1] + 2))
    lines[#lines + 1] = "  " .. r[1] .. pad .. r[2]
  end
  return table.concat(lines, "\n")
end

-- Rows for the methods of a class: every function in its chain (nearest class first) plus any
-- documented method of the class's own name, described by its entry or an inherited one.
local function class_methods(cls, cname, names, owners)
  local seen, rows = {}, {}
  -- the entry of method k documented on a class above c (a user class's override of forward)
  local function inherited(c, k)
    local depth = 0
    c = parent_class(c)
    while c ~= nil and depth < 50 do
      for _, n in ipairs(names[c] or {}) do
        if E[n .. "." .. k] then return E[n .. "." .. k] end
      end
      c, depth = parent_class(c), depth + 1
    end
    return nil
  end
  local c, depth = cls, 0
  while type(c) == "table" and depth < 50 do
    for k, v in next, c do
      if type(k) == "string" and type(v) == "function" and k:sub(1, 1) ~= "_" and not seen[k] then
        seen[k] = true
        local _, e = function_entry(v, names, owners)
        e = e or inherited(c, k)
        rows[#rows + 1] = {k, e and e.doc or "(undocumented)"}
      end
    end
    c, depth = parent_class(c), depth + 1
  end
  if cname then
    local prefix = cname .. "."
    for n, e in pairs(E) do
      if n:sub(1, #prefix) == prefix and not n:find(".", #prefix + 1, true) and e.kind == "function" then
        local k = n:sub(#prefix + 1)
        if not seen[k] then
          seen[k] = true
          rows[#rows + 1] = {k, e.doc}
        end
      end
    end
  end
  table.sort(rows, function(a, b) return a[1] < b[1] end)
  return rows
end

local function class_text(cls, cname, names, owners, intro)
  local out = {}
  if intro then out[#out + 1] = intro end
  local e = cname and E[cname]
  if e then out[#out + 1] = entry_text(cname, e) end
  local up = type(cls) == "table" and parent_class(cls)
  if up then
    local pn = table_entry(up, names) or (names[up] or {})[1] or rawget(up, "__name") or "?"
    out[#out + 1] = "  derives from " .. pn
  end
  -- documented fields of the class and its ancestors (m.training, opt.lr)
  local fields, seen_field = {}, {}
  local c, depth, cn = cls, 0, cname
  while (c ~= nil or cn ~= nil) and depth < 50 do
    for _, n in ipairs(cn and {cn} or names[c] or {}) do
      for fname, fe in pairs(E) do
        local k = fname:sub(#n + 2)
        if fe.kind == "field" and fname:sub(1, #n + 1) == n .. "." and is_name(k) and not seen_field[k] then
          seen_field[k] = true
          fields[#fields + 1] = {"." .. k, fe.doc}
        end
      end
    end
    c, cn, depth = type(c) == "table" and parent_class(c) or nil, nil, depth + 1
  end
  if #fields > 0 then
    table.sort(fields, function(a, b) return a[1] < b[1] end)
    out[#out + 1] = "Fields:"
    out[#out + 1] = listing(fields)
  end
  local rows = class_methods(cls, cname, names, owners)
  if #rows > 0 then
    out[#out + 1] = "Methods:"
    out[#out + 1] = listing(rows)
  end
  return table.concat(out, "\n")
end

-- A module (namespace) table: its functions with one-liners, then its sub-modules and classes.
local function module_text(t, name, names, owners)
  local out = {}
  local e = E[name]
  out[#out + 1] = name .. (e and (" - " .. e.doc) or "")
  local fns, subs, seen = {}, {}, {}
  local function add_row(k, v, doc_name)
    if seen[k] then return end
    seen[k] = true
    local doc
    if type(v) == "function" then
      local _, fe = function_entry(v, names, owners)
      doc = fe and fe.doc
    else
      doc = E[doc_name] and E[doc_name].doc
    end
    local row = {k, doc or "(undocumented)"}
    if type(v) == "table" or (v == nil and E[doc_name] and E[doc_name].kind ~= "function") then
      subs[#subs + 1] = row
    else
      fns[#fns + 1] = row
    end
  end
  if type(t) == "table" then
    for k, v in next, t do
      if type(k) == "string" and k:sub(1, 1) ~= "_" and (type(v) == "function" or type(v) == "table") then
        add_row(k, v, name .. "." .. k)
      end
    end
  end
  local prefix = name .. "."
  for n, ne in pairs(E) do
    if n:sub(1, #prefix) == prefix and not n:find(".", #prefix + 1, true) and ne.kind ~= "field" then
      local k = n:sub(#prefix + 1)
      if k:sub(1, 1) ~= "_" then add_row(k, nil, n) end
    end
  end
  table.sort(fns, function(a, b) return a[1] < b[1] end)
  table.sort(subs, function(a, b) return a[1] < b[1] end)
  if #fns > 0 then
    out[#out + 1] = "Functions:"
    out[#out + 1] = listing(fns)
  end
  if #subs > 0 then
    out[#out + 1] = "Modules and classes:"
    out[#out + 1] = listing(subs)
  end
  out[#out + 1] = "help(" .. name .. ".NAME) for one of them."
  return table.concat(out, "\n")
end

-- A tensor's help (t nil: the Tensor class itself).
local function tensor_text(t)
  local cnn = get_cnn() or {}
  local shape = ""
  local ok, s = pcall(function() return "{" .. table.concat(t:shape(), ", ") .. "} " .. t:dtype() .. " " end)
  if t ~= nil and ok then shape = s end
  local rows, fields = {}, {}
  for n, e in pairs(E) do
    local k = n:match("^cnn%.Tensor%.([%w_]+)$")
    if k then
      if e.kind == "field" then fields[#fields + 1] = {"." .. k, e.doc} else rows[#rows + 1] = {k, e.doc} end
    end
  end
  local methods = rawget(cnn, "Tensor") or core.Tensor
  local seen = {}
  for _, r in ipairs(rows) do seen[r[1]] = true end
  for k, v in pairs(methods) do
    if type(k) == "string" and type(v) == "function" and not seen[k] and k:sub(1, 1) ~= "_" then
      rows[#rows + 1] = {k, "(undocumented)"}
    end
  end
  table.sort(rows, function(a, b) return a[1] < b[1] end)
  table.sort(fields, function(a, b) return a[1] < b[1] end)
  return table.concat({
    "Tensor " .. shape .. "- " .. E["cnn.Tensor"].doc,
    "Operators: + - * / ^ (numbers on either side), unary -, #t (size of dim 1), t[i], t[i] = v",
    "Fields:", listing(fields),
    "Methods (t:name(...)):", listing(rows),
  }, "\n")
end

-- A Lua function with no entry: where it was defined and its parameters.
local function plain_function_text(f, names)
  local info = debug.getinfo(f, "Su")
  local std = {}
  for _, lib in ipairs({"_G", "string", "table", "math", "io", "os", "coroutine", "utf8", "debug", "package"}) do
    local t = lib == "_G" and _G or rawget(_G, lib)
    if type(t) == "table" then
      for k, v in pairs(t) do
        if v == f and type(k) == "string" then std[#std + 1] = (lib == "_G" and "" or lib .. ".") .. k end
      end
    end
  end
  if #std > 0 then
    table.sort(std)
    return std[1] .. ": a Lua standard library function (see the Lua 5.4 reference manual)"
  end
  local where = (names[f] and names[f][1]) and (names[f][1] .. ": ") or ""
  if info.what == "C" then return where .. "a C function with no help entry" end
  local params = {}
  for i = 1, info.nparams do params[i] = debug.getlocal(f, i) or "?" end
  if info.isvararg then params[#params + 1] = "..." end
  return string.format("%sa Lua function (%s) defined at %s:%d, with no help entry",
    where, table.concat(params, ", "), info.short_src, info.linedefined)
end

local function unknown_text(x)
  local shown = type(x) == "string" and string.format("%q", x) or tostring(x)
  return string.format("help: %s is a %s, not a cnn function, module, class or tensor. " ..
    "help() gives an overview; help(\"name\") searches.", shown, type(x))
end

local function overview_text()
  local rows = {}
  for n, e in pairs(E) do
    if e.kind == "module" and n ~= "cnn" then rows[#rows + 1] = {n, e.doc} end
  end
  table.sort(rows, function(a, b) return a[1] < b[1] end)
  return table.concat({
    "cnn " .. tostring((get_cnn() or {}).version or "") .. " - " .. E.cnn.doc,
    "Modules:", listing(rows),
    "  cnn.Tensor  " .. E["cnn.Tensor"].doc,
    "Ask:",
    "  help(cnn)          the functions of a module (also help(cnn.F), help(cnn.nn), ...)",
    "  help(cnn.zeros)    a function's signature and description",
    "  help(x)            a tensor's methods, a module's class and methods",
    "  help(\"conv2d\")     search by name",
    "At the prompt: TAB completes names, fields and methods (x:<TAB>); %time CODE and",
    "%timeit CODE time an expression; time(f) and timeit(f, n) do the same in scripts.",
  }, "\n")
end

local function value_text(x, names, owners)
  if is_tensor(x) then return tensor_text(x) end
  if x == core.Tensor then return tensor_text(nil) end
  if type(x) == "function" then
    local n, e = function_entry(x, names, owners)
    if e then
      local own = names[x] and names[x][1]
      if own and own ~= n and not E[own] then
        return entry_text(n, e) .. "\n  (" .. own .. " overrides " .. n .. ")"
      end
      return entry_text(n, e)
    end
    return plain_function_text(x, names)
  end
  if type(x) == "table" then
    if is_module(x) then
      local s = rawget(x, "__nn")
      local cls = type(s) == "table" and s.class or nil
      local cname = cls and table_entry(cls, names)
      local label = cls and rawget(cls, "__name") or "?"
      local ok, n = pcall(function() return x:num_parameters() end)
      local intro = "a " .. label .. " module" .. (cname and "" or " (a user class)") ..
        (ok and math.type(n) == "integer" and string.format(" with %d parameters", n) or "")
      return class_text(cls, cname, names, owners, intro)
    end
    local n, e = table_entry(x, names)
    if n and e.kind == "class" then return class_text(x, n, names, owners) end
    if n and e.kind == "module" then return module_text(x, n, names, owners) end
    if names[x] and rawget(x, "__mt") then -- an undocumented class reachable from cnn
      return class_text(x, nil, names, owners, "class " .. tostring(rawget(x, "__name")))
    end
    -- an instance: its metatable (or the metatable's __index) is a known class
    local mt = getmetatable(x)
    if type(mt) == "table" then
      for _, c in ipairs({mt, rawget(mt, "__index")}) do
        if type(c) == "table" then
          local cn, ce = table_entry(c, names)
          if ce and ce.kind == "class" then
            return class_text(c, cn, names, owners, "an instance of " .. cn)
          end
        end
      end
      local cn = INSTANCE_CLASS[rawget(mt, "__name") or ""]
      if cn then return class_text(mt, cn, names, owners, "an instance of " .. cn) end
    end
    if names[x] then return module_text(x, names[x][1], names, owners) end
  end
  if type(x) == "userdata" then
    local mt = getmetatable(x)
    local cn = type(mt) == "table" and INSTANCE_CLASS[rawget(mt, "__name") or ""]
    if cn then return class_text(nil, cn, names, owners, "an instance of " .. cn) end
  end
  return unknown_text(x)
end

-- A name as typed: a documented dotted path (with or without "cnn."), "t:reshape" style method
-- names, or a search.
local function name_text(s, names, owners)
  local path = s:gsub("^Tensor[:.]", "cnn.Tensor."):gsub("^t:", "cnn.Tensor."):gsub("^m:", "cnn.nn.Module.")
  for _, candidate in ipairs({path, "cnn." .. path}) do
    if E[candidate] then
      local e = E[candidate]
      if e.kind == "module" then
        local v, ok = get_cnn(), true
        for part in candidate:gmatch("[^.]+") do
          if part ~= "cnn" then ok, v = pcall(function() return v[part] end) end
          if not ok or v == nil then break end
        end
        if ok and type(v) == "table" then return module_text(v, candidate, names, owners) end
        return module_text(nil, candidate, names, owners) .. "\n  (not in this build)"
      end
      return entry_text(candidate, e)
    end
  end
  local found, n_exact = help.search(s)
  if #found == 0 then
    return string.format("help: nothing matches %q. help() lists the modules.", s)
  end
  if n_exact > 0 then
    local parts = {}
    for i = 1, n_exact do
      local n = found[i]
      local e = E[n]
      parts[#parts + 1] = e.kind == "function" and entry_text(n, e) or (n .. "\n  " .. e.sig .. "\n  " .. e.doc)
    end
    return table.concat(parts, "\n\n")
  end
  local rows = {}
  for i = 1, math.min(#found, 60) do rows[i] = {found[i], E[found[i]].doc} end
  local more = #found > 60 and string.format("\n  ... and %d more", #found - 60) or ""
  return string.format("help: %d names match %q:\n", #found, s) .. listing(rows) .. more
end

--- help.text(x): the text help(x) prints; help.text() is the overview.
function help.text(...)
  if select("#", ...) == 0 then return overview_text() end
  local x = ...
  if x == nil then
    return "help: got nil (a misspelt name, or a field that does not exist?). help() gives an " ..
      "overview; help(\"name\") searches."
  end
  local names, owners = build_map()
  if type(x) == "string" then return name_text(x, names, owners) end
  return value_text(x, names, owners)
end

--- help(x) prints help for x: a function, module, class, tensor, nn module or name.
function help.show(...)
  local ok, text = pcall(help.text, ...)
  if not ok then text = "help: could not describe this value (" .. tostring(text) .. ")" end
  io.stdout:write(text, "\n")
end

return setmetatable(help, {__call = function(_, ...) return help.show(...) end})
