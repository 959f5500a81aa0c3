-- Fine-tunes a torchvision ResNet-18 on an ImageFolder of photos (JPEG or PNG, any sizes; one
-- folder per class; DIR/train and DIR/val when both exist, otherwise every 4th image is held out).
-- Training images get a random resized crop to --image-size and a flip, test images a resize to
-- --image-size * 256 / 224 and a centre crop, both the ImageNet normalization; --workers threads
-- decode and transform the next batches while a step trains. --weights loads the checkpoint
-- (a safetensors state_dict with torchvision's names, e.g. from
-- `python3 scripts/tools/export_torch_models.py resnet18 --out DIR`); `fc` is then replaced by a new
-- nn.Linear(512, number of classes). Everything trains unless --freeze (only fc). Without --data a
-- tiny synthetic folder of coloured shapes is made, so it runs anywhere. Writes a checkpoint, a CSV of
-- per-epoch metrics and a plot of the training curves; the last line is `test accuracy: NN.NN%`.
--
--   cnnlua examples/finetune_resnet18.lua --weights w/resnet18.safetensors --data ~/flowers --epochs 5
--   cnnlua examples/finetune_resnet18.lua --weights w/resnet18.safetensors --data ~/flowers --freeze
local argparse = require "argparse"
local int, num = cnn.util.cli_integer, cnn.util.cli_number -- converters that name their option
local nn, optim, data = cnn.nn, cnn.optim, cnn.data
local folders = require "cnn.datasets.folders"

local parser = argparse("finetune_resnet18.lua", "Fine-tune a torchvision ResNet-18 on folders of photos.")
parser:option("--weights", "ResNet-18 state_dict (safetensors, torchvision names); random init without it.")
parser:option("--data", "ImageFolder of JPEGs/PNGs of any size (a folder per class); synthetic shapes without.")
parser:flag("--freeze", "Train only the new fc layer (the backbone keeps its weights).")
parser:option("--image-size", "Side of the crops the network sees.", "224"):convert(int "--image-size")
parser:option("--workers", "Threads that decode and transform the next batches (0: in the training loop).", "1")
  :convert(int "--workers")
parser:flag("--cache", "Keep the decoded images in memory as bytes (for small sets).")
parser:option("--epochs", "Number of epochs (in all, when resuming).", "5"):convert(int "--epochs")
parser:option("--batch-size", "Mini-batch size.", "32"):convert(int "--batch-size")
parser:option("--lr", "Initial learning rate.", "0.01"):convert(num "--lr")
parser:option("--momentum", "SGD momentum.", "0.9"):convert(num "--momentum")
parser:option("--weight-decay", "L2 weight decay.", "1e-4"):convert(num "--weight-decay")
parser:option("--schedule", "Learning-rate schedule: step (x0.1 at 50% and 75% of the epochs) or cosine.", "cosine")
  :choices {"step", "cosine"}
parser:option("--seed", "Random seed (new fc, shuffling, augmentation).", "1"):convert(int "--seed")
parser:option("--threads", "Threads for the kernels.", tostring(cnn.get_num_threads())):convert(int "--threads")
parser:option("--save", "Checkpoint path (default: OUT/checkpoint.safetensors).")
parser:option("--resume", "Continue from this checkpoint (model, optimiser, epoch).")
parser:option("--out", "Output folder (default: the resumed checkpoint's folder, else runs/finetune-resnet18-<time>).")
local args = parser:parse(cnn.util.cli_args(arg))

for _, name in ipairs {"image_size", "epochs", "batch_size", "seed", "threads"} do
  local v = args[name]
  if v == nil or (v < 1 and name ~= "seed") then
    parser:error(string.format("--%s must be a positive integer", name:gsub("_", "-")))
  end
end
if args.image_size < 32 then parser:error("--image-size must be at least 32") end
if not args.workers or args.workers < 0 then parser:error("--workers must be a non-negative integer") end
for _, name in ipairs {"lr", "momentum", "weight_decay"} do
  if not args[name] or args[name] < 0 then
    parser:error(string.format("--%s must be a non-negative number", name:gsub("_", "-")))
  end
end

cnn.set_num_threads(args.threads)
cnn.manual_seed(args.seed)
-- the output folder: --out, else the folder of the checkpoint being resumed, else a new one; made at
-- its first write (cnn.trainer.fit), so a run that fails before, on a bad --data say, leaves none behind
local out = cnn.trainer.out_dir {out = args.out, resume = args.resume, prefix = "finetune-resnet18", create = false}
local ckpt_path = args.save or (out .. "/checkpoint.safetensors")

-- data: photo class folders, or synthetic shapes drawn into a temporary folder; the transforms
-- (random resized crop + flip, resize + centre crop, ImageNet normalization) run in C
local train_set, test_set, cleanup = folders.open(args.data, args.image_size, args.seed, {cache = args.cache})
-- the synthetic shapes' temporary folder goes when the script ends, by an error or Ctrl-C too
local _ <close> = setmetatable({}, {__close = function() if cleanup then folders.remove(cleanup) end end})
local classes = train_set.classes
local loader = data.DataLoader(train_set, {batch_size = args.batch_size, shuffle = true, seed = args.seed,
                                           drop_last = #train_set > args.batch_size, workers = args.workers})
local test_loader = data.DataLoader(test_set, {batch_size = args.batch_size, workers = args.workers})

-- model: the checkpoint's network as it was saved (its fc included: a strict load checks every
-- key and shape), then a new head for our classes
local model
if args.weights then
  local sd = cnn.load(args.weights)
  local fc = sd["fc.weight"]
  if not fc then error(string.format("%s: no fc.weight: not a torchvision ResNet-18 state_dict", args.weights), 0) end
  model = cnn.models.resnet {depth = 18, num_classes = fc:size(1)}
  local ok, err = pcall(model.load_state_dict, model, sd)
  if not ok then error(string.format("%s: %s", args.weights, tostring(err)), 0) end
  print(string.format("loaded %s", args.weights))
else
  io.stderr:write("warning: no --weights: fine-tuning from a random initialisation\n")
  model = cnn.models.resnet {depth = 18}
end
model.fc = nn.Linear(512, #classes)
local params = model:parameters()
if args.freeze then
  model:requires_grad_(false)
  model.fc:requires_grad_(true)
  params = model.fc:parameters()
end
local opt = optim.SGD(params, {lr = args.lr, momentum = args.momentum, weight_decay = args.weight_decay})

local lr_at = cnn.trainer.schedule(args.schedule, args.lr, args.epochs)

local trainable = 0
for _, p in ipairs(params) do trainable = trainable + p:numel() end

print(string.format("ResNet-18, %d parameters (%d trained); %d training and %d test images (%dx%d crops) from %s; "
  .. "%d classes; %d threads, %d loader workers",
  model:num_parameters(), trainable, #train_set, #test_set, args.image_size, args.image_size,
  args.data or "synthetic shapes", #classes, cnn.get_num_threads(), args.workers))

local _, test_acc = cnn.trainer.fit {model = model, optimizer = opt, loader = loader, test_loader = test_loader,
  epochs = args.epochs, out = out, checkpoint = ckpt_path, resume = args.resume, lr_at = lr_at, progress_every = 5,
  title = "ResNet-18 fine-tuning", extra_state = {classes = classes, freeze = args.freeze or false}}

print(string.format("wrote %s/{metrics.csv,curves.png} and %s", out, ckpt_path))
print(string.format("test accuracy: %.2f%%", 100 * test_acc))
