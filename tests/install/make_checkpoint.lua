-- What the classify tests compare libcnn's C example against, all from cnnlua: a LeNet-5 trained
-- for 200 steps on the first 12800 Fashion-MNIST training images by cnn.trainer.fit (the loop and
-- the checkpoint of examples/train_lenet.lua), and the numbers cnnlua computes with it.
--   cnnlua tests/install/make_checkpoint.lua OUT_DIR
-- writes OUT_DIR/checkpoint.safetensors (the trainer's: tensors under "model."),
-- OUT_DIR/state_dict.safetensors (cnn.save of the model's state_dict: no prefix),
-- OUT_DIR/expected_accuracy.txt ("accuracy: NN.NN%", the trainer's test accuracy over the 10000
-- test images), and OUT_DIR/png/N.png with OUT_DIR/expected_png.txt ("PATH: CLASS", 0-based) for
-- the first 8 test images.
local out = assert(arg[1], "usage: make_checkpoint.lua OUT_DIR")
local data = cnn.data
os.execute("mkdir -p '" .. out .. "/png'")

cnn.set_num_threads(cnn.get_num_threads())
cnn.manual_seed(1)
local train = data.fashion_mnist("train")
local test = data.fashion_mnist("test")
local n = 12800
local images = train.pixels:narrow(1, 1, n):float():div_(255) -- (n, 1, 28, 28) in [0, 1], as the loader makes them
local subset = data.TensorDataset(images, train.labels:narrow(1, 1, n))

local model = cnn.models.lenet5 {num_classes = 10}
local opt = cnn.optim.SGD(model:parameters(), {lr = 0.02, momentum = 0.9})
local loader = data.DataLoader(subset, {batch_size = 64, shuffle = true, drop_last = true, seed = 1})
local test_loader = data.DataLoader(test, {batch_size = 250})
local _, acc = cnn.trainer.fit {model = model, optimizer = opt, loader = loader, test_loader = test_loader,
  epochs = 1, out = out, checkpoint = out .. "/checkpoint.safetensors", title = "classify test"}
cnn.save(out .. "/state_dict.safetensors", model:state_dict())

local f = assert(io.open(out .. "/expected_accuracy.txt", "w"))
f:write(string.format("accuracy: %.2f%%\n", 100 * acc))
f:close()

-- the first 8 test images as PNG files (8-bit: the same bytes), and the classes cnnlua gives them
model:eval()
local batch, lines = {}, {}
for i = 1, 8 do
  local img = test:get(i)
  local path = string.format("%s/png/%d.png", out, i - 1)
  cnn.image.save(path, img)
  batch[i] = cnn.image.load(path, {mode = "gray"})
  lines[i] = path
end
local predicted = cnn.no_grad(function() return model(cnn.stack(batch)):argmax(2) end)
f = assert(io.open(out .. "/expected_png.txt", "w"))
for i = 1, 8 do f:write(string.format("%s: %d\n", lines[i], predicted[i] - 1)) end
f:close()
print(string.format("accuracy: %.2f%%", 100 * acc))
