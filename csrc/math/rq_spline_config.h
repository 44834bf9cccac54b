// SplineOptions (torch-facing, double) to the SplineConfig<T> the shared math reads, in one place for
// the CPU and CUDA drivers. The outer-knot derivative of linear tails reproduces nflows: its
// constant log(exp(1 - min_d) - 1) is rounded to T and then goes through the same softplus.
#pragma once

#include "rq_spline.h"

#include <cstdint>

#include <cmath>

namespace mfk {
namespace rq_spline {

// The op's options as its schema takes them (ops/rq_spline.cpp parses and checks them).
struct SplineOptions {
  bool inverse;
  bool linear_tails;  // tails="linear"; otherwise bounded (tails=None)
  double tail_bound;
  double min_bin_width;
  double min_bin_height;
  double min_derivative;
};

template <typename T>
SplineConfig<T> make_config(const SplineOptions& o, int64_t num_bins, int64_t num_derivs) {
  const T min_d = static_cast<T>(o.min_derivative);
  const T tail_constant = static_cast<T>(std::log(std::expm1(1.0 - o.min_derivative)));
  return SplineConfig<T>{static_cast<int>(num_bins),       static_cast<int>(num_derivs),
                         static_cast<T>(o.tail_bound),     static_cast<T>(o.min_bin_width),
                         static_cast<T>(o.min_bin_height), min_d,
                         min_d + softplus_(tail_constant)};
}

}  // namespace rq_spline
}  // namespace mfk
