-- Classifies photographs with an ImageNet network: for each image, the top-5 classes and their
-- probabilities. The weights are a torchvision state_dict in safetensors (ResNet-18, 34 or 50,
-- told apart by their names), e.g. from
--   python3 scripts/tools/export_torch_models.py pretrained resnet18 --out DIR
-- which also writes DIR/imagenet_classes.txt (one class name a line) for --labels. Preprocessing is
-- torchvision's ImageNet evaluation: resize the shorter side to 256 (antialiased bilinear), centre
-- crop 224, normalize by the ImageNet mean and std.
--
--   cnnlua examples/classify.lua --weights DIR/resnet18.safetensors --labels DIR/imagenet_classes.txt cat.jpg dog.png
local argparse = require "argparse"
local int = cnn.util.cli_integer -- a converter that names its option
local data, image = cnn.data, cnn.image
local T = data.transforms

local parser = argparse("classify.lua", "Top-5 ImageNet classes of photographs.")
parser:option("--weights", "A torchvision ResNet state_dict (safetensors).")
parser:option("--labels", "Class names, one a line, in the order of the network's outputs (default: class numbers).")
parser:option("--top", "How many classes to print per image.", "5"):convert(int "--top")
parser:option("--threads", "Threads for the kernels.", tostring(cnn.get_num_threads())):convert(int "--threads")
parser:flag("--logits", "Also print each image's raw logits (for comparisons with PyTorch).")
parser:argument("images", "JPEG or PNG files."):args("+")
local args = parser:parse(cnn.util.cli_args(arg))
if not args.weights then parser:error("--weights is required") end
if not args.top or args.top < 1 then parser:error("--top must be a positive integer") end
if not args.threads or args.threads < 1 then parser:error("--threads must be a positive integer") end
cnn.set_num_threads(args.threads)

local function fail(msg)
  io.stderr:write("classify.lua: " .. msg .. "\n")
  os.exit(1)
end

-- the network: ResNet depth from the state_dict's names, classes from fc.weight
local ok, sd = pcall(cnn.load, args.weights)
if not ok then fail(tostring(sd)) end
local fc = sd["fc.weight"]
if not fc then fail(args.weights .. ": no fc.weight: not a torchvision ResNet state_dict") end
local depth = sd["layer1.0.conv3.weight"] and 50 or sd["layer3.5.conv1.weight"] and 34 or 18
local model = cnn.models.resnet {depth = depth, num_classes = fc:size(1)}
local loaded, err = pcall(model.load_state_dict, model, sd)
if not loaded then fail(args.weights .. ": " .. tostring(err)) end
model:eval()

local labels = {}
if args.labels then
  local f, ferr = io.open(args.labels)
  if not f then fail(ferr) end
  for line in f:lines() do labels[#labels + 1] = line end
  f:close()
  if #labels ~= fc:size(1) then
    fail(string.format("%s has %d names but the network has %d classes", args.labels, #labels, fc:size(1)))
  end
end

local preprocess = T.compose {T.resize(256), T.center_crop(224), T.normalize(data.IMAGENET_MEAN, data.IMAGENET_STD)}

for _, path in ipairs(args.images) do
  local okl, x = pcall(image.load, path, {mode = "rgb"})
  if not okl then fail(tostring(x)) end
  local logits = cnn.no_grad(function() return model(preprocess(x):unsqueeze(1)) end)[1]
  -- the top classes, one argmax at a time (1000 values: no sort needed)
  local p = cnn.F.softmax(logits, 1):totable()
  local values, indices = {}, {}
  for k = 1, math.min(args.top, #p) do
    local best = 1
    for i = 2, #p do
      if p[i] > p[best] then best = i end
    end
    values[k], indices[k] = p[best], best
    p[best] = -1
  end
  print(path)
  for k = 1, #values do
    local i = indices[k]
    print(string.format("  %6.2f%%  %s", 100 * values[k], labels[i] or ("class " .. i)))
  end
  if args.logits then
    local parts = {}
    for i = 1, logits:numel() do parts[i] = string.format("%.6g", logits[i]) end
    print("  logits " .. table.concat(parts, " "))
  end
end
