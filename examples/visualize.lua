-- Seeing inside a trained network (the course's "visualising a CNN"): for one input image, writes
--   filters.png     the first convolution's filters (in colour when they read RGB)
--   features_N.png  the feature maps of every stage (each conv's activation for LeNet, AlexNet and
--                   VGG; the stem and every stage of a ResNet; GoogLeNet's stem and inception stages)
--   saliency.png    |d score / d pixel| of the top class (Simonyan et al. 2013)
--   gradcam.png     Grad-CAM (Selvaraju et al. 2017) of the top class over the image: the last
--                   stage's activations weighted by the spatial mean of the score's gradient
--   summary.png     the input, the saliency map and the Grad-CAM overlay side by side
--   maps.safetensors  the numbers behind them: input (as the network saw it), probs, saliency
--                   (H, W) and gradcam (h, w, before it is resized to the image)
-- and prints the top classes. The activations and gradients are caught with module hooks
-- (register_forward_hook, register_full_backward_hook); the pictures are cnn.image.grid tiles.
--
-- --weights takes a checkpoint of the training examples (train_lenet.lua, train_alexnet.lua,
-- train_vgg.lua, train_resnet.lua: the class names come with it) or a plain state_dict
-- (cnn.save(path, model:state_dict()), a torchvision export); the network is recognised from its
-- parameter names and shapes (--model overrides). The image (PNG or JPEG) is converted to the
-- network's channels and size: a 28x28 image is padded to 32x32 for the CIFAR-sized networks
-- trained on Fashion-MNIST, as the examples do; other sizes are resized and centre-cropped.
--
--   cnnlua examples/train_lenet.lua --epochs 1 --out runs/lenet
--   cnnlua examples/visualize.lua --weights runs/lenet/checkpoint.safetensors --image boot.png
--   cnnlua examples/visualize.lua --weights resnet18.safetensors --image cat.jpg --out runs/cat
local argparse = require "argparse"
local int = cnn.util.cli_integer -- a converter that names its option
local F, image = cnn.F, cnn.image

local parser = argparse("visualize.lua", "Filters, feature maps, a saliency map and Grad-CAM for one image.")
parser:option("--weights", "A training checkpoint or a state_dict (safetensors)."):args(1)
parser:option("--image", "The input image (PNG or JPEG)."):args(1)
parser:option("--model", "The network (default: recognised from the weights).")
  :choices {"auto", "lenet5", "alexnet", "alexnet_cifar", "vgg", "vgg_cifar", "resnet", "resnet_cifar", "googlenet"}
  :default "auto"
parser:option("--normalize", "Input normalisation as in training: none, fashion (0.2860, 0.3530), cifar, " ..
  "imagenet; auto picks by the network (LeNet none, 1-channel 32x32 fashion, 3-channel 32x32 cifar, larger imagenet).")
  :choices {"auto", "none", "fashion", "cifar", "imagenet"}:default "auto"
parser:flag("--invert", "Invert the image first (dark objects on a light background, as photos are, against " ..
  "Fashion-MNIST's light on dark).")
parser:option("--class", "Explain this class (a 1-based index or a class name) instead of the top one.")
parser:option("--max-maps", "Feature maps shown per stage.", "32"):convert(int "--max-maps")
parser:option("--size", "The side the saliency and Grad-CAM pictures are drawn at.", "224"):convert(int "--size")
parser:option("--out", "Output folder.", "runs/visualize")
local args = parser:parse(cnn.util.cli_args(arg))
if not args.weights or not args.image then parser:error("--weights and --image are required") end
if not args.max_maps or args.max_maps < 1 then parser:error("--max-maps must be a positive integer") end
if not args.size or args.size < 16 then parser:error("--size must be an integer of at least 16") end

local function fail(fmt, ...)
  io.stderr:write("visualize.lua: ", string.format(fmt, ...), "\n")
  os.exit(1)
end

-- ---- the weights and the network ------------------------------------------------------------

local state, classes
do
  local ok, ckpt = pcall(cnn.checkpoint.load, args.weights)
  if ok and type(ckpt) == "table" and type(ckpt.model) == "table" then
    state, classes = ckpt.model, ckpt.classes
  else
    local ok2, sd = pcall(cnn.load, args.weights)
    if not ok2 then fail("%s", tostring(sd)) end
    state = sd
  end
end

local function shape(name) return state[name] and state[name]:shape() end

-- The largest N such that prefix.N.suffix is a key, plus 1 (blocks in a ResNet stage), or 0.
local function count_blocks(prefix, suffix)
  local n = 0
  while state[prefix .. "." .. n .. "." .. suffix] do n = n + 1 end
  return n
end

-- {constructor, options, family, input side} recognised from the state_dict's names and shapes.
local function recognise()
  local forced = args.model ~= "auto" and args.model or nil
  if state["inception3a.branch1.conv.weight"] or forced == "googlenet" then
    return "googlenet", {num_classes = shape("fc.weight")[1], aux_logits = state["aux1.fc1.weight"] ~= nil}, 224
  end
  if state["layer1.0.conv1.weight"] then
    local conv1, classes_n = shape("conv1.weight"), shape("fc.weight")[1]
    if conv1[3] == 7 and forced ~= "resnet_cifar" then
      local counts = {}
      for i = 1, 4 do counts[i] = count_blocks("layer" .. i, "conv1.weight") end
      local bottleneck = state["layer1.0.conv3.weight"] ~= nil
      local depth = bottleneck and 50 or (counts[1] == 2 and 18 or 34)
      return "resnet", {depth = depth, num_classes = classes_n, in_channels = conv1[2]}, 224
    end
    local n = count_blocks("layer1", "conv1.weight")
    return "resnet_cifar", {depth = 6 * n + 2, num_classes = classes_n, in_channels = conv1[2],
      shortcut = state["layer2.0.downsample.0.weight"] and "B" or "A"}, 32
  end
  local first = shape("features.0.weight")
  if first then
    -- the last Linear of the classifier gives the classes
    local last, i = nil, 0
    while i < 16 do
      if state["classifier." .. i .. ".weight"] then last = i end
      i = i + 1
    end
    local n_classes = last and shape("classifier." .. last .. ".weight")[1]
    if (first[1] == 6 and first[3] == 5 and shape("classifier.0.weight") and shape("classifier.0.weight")[2] == 400)
        or forced == "lenet5" then
      return "lenet5", {num_classes = n_classes, in_channels = first[2]}, 28
    end
    if (first[3] == 11 or (first[3] == 5 and first[1] == 48)) and forced ~= "vgg" and forced ~= "vgg_cifar" then
      if first[3] == 11 then return "alexnet", {num_classes = n_classes, in_channels = first[2]}, 227 end
      return "alexnet_cifar", {num_classes = n_classes, in_channels = first[2]}, 32
    end
    if first[3] == 3 then
      local convs, bn = 0, state["features.1.running_mean"] ~= nil
      for k = 0, 80 do
        local s = shape("features." .. k .. ".weight")
        if s and #s == 4 then convs = convs + 1 end
      end
      local depth = convs + 3
      local fc1 = shape("classifier.0.weight")
      if fc1 and fc1[2] == 25088 then
        return "vgg", {depth = depth, batch_norm = bn, num_classes = n_classes, in_channels = first[2]}, 224
      end
      return "vgg_cifar", {depth = depth, batch_norm = bn, num_classes = n_classes, in_channels = first[2]}, 32
    end
  end
  fail("cannot tell which network %s holds (name it with --model)", args.weights)
end

local family, opts, side = recognise()
if args.model ~= "auto" and args.model ~= family then
  fail("--model %s does not fit the weights in %s (they look like %s)", args.model, args.weights, family)
end
local net = cnn.nn.skip_init(cnn.models[family], opts) -- the weights come from the file
local ok, err = pcall(net.load_state_dict, net, state)
if not ok then fail("%s", tostring(err)) end
net:eval()
local in_channels = opts.in_channels or 3

-- ---- the input ------------------------------------------------------------------------------

if in_channels ~= 1 and in_channels ~= 3 then
  fail("the network reads %d channels; only 1 and 3 are drawn", in_channels)
end
local raw = image.load(args.image, {mode = in_channels == 1 and "gray" or "rgb"})
if args.invert then raw = 1 - raw end
local _, h, w = table.unpack(raw:shape())
if side == 32 and h == 28 and w == 28 then
  raw = image.crop(raw, -1, -1, 32, 32) -- zero padding by 2, as the examples pad Fashion-MNIST
elseif h ~= side or w ~= side then
  raw = image.center_crop(image.resize(raw, side), side)
end

local NORMS = {
  fashion = {{0.2860}, {0.3530}},
  cifar = {{0.4914, 0.4822, 0.4465}, {0.2470, 0.2435, 0.2616}},
  imagenet = {{0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}},
}
local norm = args.normalize
if norm == "auto" then
  if family == "lenet5" then norm = "none"
  elseif side == 32 then norm = in_channels == 1 and "fashion" or "cifar"
  else norm = "imagenet" end
end
local x = raw:clone()
if norm ~= "none" then
  local m, s = NORMS[norm][1], NORMS[norm][2]
  if #m ~= in_channels then
    m, s = {m[1]}, {s[1]}
    for c = 2, in_channels do m[c], s[c] = m[1], s[1] end
  end
  x = (x - cnn.tensor(m):view(in_channels, 1, 1)) / cnn.tensor(s):view(in_channels, 1, 1)
end
x = x:view(1, in_channels, side, side)

-- ---- where to look: the stages and Grad-CAM's layer -------------------------------------------

-- {name, module} pairs whose outputs are drawn, in order; the last is Grad-CAM's layer
local stages = {}
if family == "resnet" or family == "resnet_cifar" then
  stages[1] = {"stem (conv1, bn1, relu)", net.relu}
  for i = 1, family == "resnet" and 4 or 3 do stages[#stages + 1] = {"layer" .. i, net["layer" .. i]} end
elseif family == "googlenet" then
  for _, name in ipairs {"conv1", "conv3", "inception3b", "inception4e", "inception5b"} do
    stages[#stages + 1] = {name, net[name]}
  end
else
  -- each convolution's activation: the first ReLU after it in features
  local conv_at
  for i = 1, #net.features do
    local m = net.features[i]
    if m:is_a(cnn.nn.Conv2d) then
      conv_at = i
    elseif conv_at and m:is_a(cnn.nn.ReLU) then
      stages[#stages + 1] = {string.format("features.%d (conv features.%d + ReLU)", i - 1, conv_at - 1), m}
      conv_at = nil
    end
  end
end

local acts, cam_grad = {}, nil
local handles = {}
for i, st in ipairs(stages) do
  handles[#handles + 1] = st[2]:register_forward_hook(function(_, _, out) acts[i] = out end)
end
local cam_module = stages[#stages][2]
handles[#handles + 1] = cam_module:register_full_backward_hook(function(_, _, grad_output)
  cam_grad = grad_output[1]
end)

-- ---- one forward, one backward ----------------------------------------------------------------

x:requires_grad_(true)
local logits = net(x)
local probs = F.softmax(logits:detach(), 2)[1]
local n_classes = probs:numel()
local function class_name(k) return classes and classes[k] or tostring(k) end

local target
if args.class then
  target = math.tointeger(tonumber(args.class))
  if not target and classes then
    for k, name in ipairs(classes) do if name == args.class then target = k end end
  end
  if not target or target < 1 or target > n_classes then
    fail("--class %s is not a class of this network (1..%d%s)", args.class, n_classes,
      classes and (" or a name: " .. table.concat(classes, ", ")) or "")
  end
else
  target = probs:argmax():item()
end
logits:narrow(2, target, 1):sum():backward()
for _, handle in ipairs(handles) do handle:remove() end

local order = {}
for k = 1, n_classes do order[k] = k end
table.sort(order, function(a, b) return probs[a] > probs[b] end)
print(string.format("%s (%s) on %s, %dx%d, normalisation %s", family, args.weights, args.image, side, side, norm))
for r = 1, math.min(5, n_classes) do
  local k = order[r]
  print(string.format("  %5.1f%%  %d %s%s", 100 * probs[k], k, class_name(k), k == target and "  <- explained" or ""))
end

-- ---- pictures ---------------------------------------------------------------------------------

cnn.trainer.out_dir {out = args.out} -- creates the folder
local written = {}
local function save(name, t)
  image.save(args.out .. "/" .. name, t)
  written[#written + 1] = name
end

-- t (C, h, w) blown up by whole pixels until its longer side is about `most` pixels
local function enlarge(t, most)
  local _, th, tw = table.unpack(t:shape())
  local s = math.max(1, most // math.max(th, tw))
  if s == 1 then return t end
  return image.resize(t, {th * s, tw * s}, {interpolation = "nearest"})
end

-- v (H, W) in [0, 1] as a (3, H, W) "jet" colour map: blue, cyan, yellow, red
local function heat(v)
  local function band(c) return (1.5 - (v * 4 - c):abs()):clamp(0, 1) end
  return cnn.stack({band(3), band(2), band(1)}, 1)
end

local function unit(t) -- shifted and scaled to [0, 1]
  local lo, hi = t:min():item(), t:max():item()
  if hi - lo < 1e-12 then return t * 0 end
  return (t - lo) / (hi - lo)
end

cnn.no_grad(function()
  -- the first convolution's filters
  local first
  for _, m in ipairs(net:modules()) do
    if m:is_a(cnn.nn.Conv2d) then first = m; break end
  end
  local wts = first.weight:detach()
  if wts:size(2) ~= 3 then wts = wts:narrow(2, 1, 1) end
  local grid = image.grid(wts, {nrow = math.min(16, wts:size(1)), padding = 1, normalize = true, scale_each = true,
    pad_value = 1})
  save("filters.png", enlarge(grid, 800))

  -- the feature maps of every stage
  for i, st in ipairs(stages) do
    local a = acts[i][1]
    local n = math.min(args.max_maps, a:size(1))
    local maps = a:narrow(1, 1, n):contiguous():view(n, 1, a:size(2), a:size(3))
    local g = image.grid(maps, {nrow = math.min(8, n), padding = 1, normalize = true, scale_each = true, pad_value = 1})
    save(string.format("features_%d.png", i), enlarge(g, 800))
    print(string.format("  stage %d: %s, %d maps of %dx%d (%d shown)", i, st[1], a:size(1), a:size(2), a:size(3), n))
  end

  -- the image as RGB at the drawing size
  local S = args.size
  local rgb = raw
  if in_channels == 1 then rgb = raw:expand(3, side, side):contiguous() end
  rgb = image.resize(rgb, {S, S}, {interpolation = side < S / 2 and "nearest" or "bilinear"}):clamp(0, 1)

  -- saliency: the largest |gradient| over the channels at each pixel
  local sal = x.grad[1]:abs():max(1)
  sal = unit(image.resize(sal:view(1, side, side), {S, S}, {interpolation = "nearest"})[1])
  save("saliency.png", heat(sal))

  -- Grad-CAM: relu(sum over channels of the channel's mean gradient times its activation)
  local A, G = acts[#stages][1], cam_grad[1] -- (C, h, w)
  local alpha = G:mean(3):mean(2):view(-1, 1, 1)
  local cam = (A * alpha):sum(1):relu() -- (h, w)
  local ch, cw = A:size(2), A:size(3)
  cam = image.resize(cam:view(1, ch, cw), {S, S}, {interpolation = "bilinear", antialias = false})[1]
  cam = unit(cam)
  local overlay = (rgb * 0.5 + heat(cam) * 0.5):clamp(0, 1)
  save("gradcam.png", overlay)
  print(string.format("  Grad-CAM on %s (%dx%d)", stages[#stages][1], ch, cw))

  save("summary.png", image.grid(cnn.stack({rgb, heat(sal), overlay}, 1), {nrow = 3, padding = 4, pad_value = 1}))
  cnn.save(args.out .. "/maps.safetensors", {input = x:detach()[1]:contiguous(), probs = probs:contiguous(),
    saliency = x.grad[1]:abs():max(1):contiguous(), gradcam = (A * alpha):sum(1):relu():contiguous()})
  written[#written + 1] = "maps.safetensors"
end)
print(string.format("wrote %s/{%s}", args.out, table.concat(written, ",")))
