#!/usr/bin/env bash
# A torchvision ResNet-18 exported from PyTorch gives the same logits in cnnlua (eval mode); see
# check_torchvision_interop.sh, which this runs for resnet18 (47 MB of weights, not committed).
#   scripts/tools/check_resnet18_interop.sh [SIZE=224] [BATCH=2] [TOL=1e-4]
exec "$(dirname "$0")/check_torchvision_interop.sh" resnet18 "${1:-224}" "${2:-2}" "${3:-1e-4}"
