// A small trainable DeltaProduct model for word problems, in one include: the layers, the model, AdamW with its
// schedule, and checkpoints (examples/train_word_problem.cpp is the trainer built on them).
#pragma once

#include "deltaproduct/model/checkpoint.hpp"
#include "deltaproduct/model/layers.hpp"
#include "deltaproduct/model/optimizer.hpp"
#include "deltaproduct/model/word_problem_model.hpp"
