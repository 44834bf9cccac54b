// Dual numbers v + d ε (ε² = 0): the shared math headers instantiated with Dual<T> compute, beside each
// value, its exact directional derivative. The second-order kernels use this to get the tangent of
// an op's *backward* kernel (a Hessian-vector product contracted with the output gradient) from the
// same analytic backward formulas the first-order kernels run, instead of a second hand-derived copy:
//
//   d/dε backward(g + ε ġ, p + ε ṗ) = backward(ġ, p) + Σ_i g_i ∇²f_i(p) ṗ
//
// Comparisons and selects look at the value only, so piecewise code (bin searches, tails, clamps)
// differentiates the branch the value takes, as autograd does. Layout is {v, d}, two T's, so a
// (..., 2) tensor stacked from values and tangents is an array of Dual<T>.
#pragma once

#include "host_device.h"

#include <limits>
#include <type_traits>

namespace mfk {

template <typename T>
struct Dual {
  T v;
  T d;
  Dual() = default;
  // From any arithmetic scalar, with zero tangent: the headers write T(0), T(2), static_cast<T>(k).
  template <typename S, typename = typename std::enable_if<std::is_arithmetic<S>::value>::type>
  MFK_HD_INLINE Dual(S value) : v(static_cast<T>(value)), d(T(0)) {}
  MFK_HD_INLINE Dual(T value, T tangent) : v(value), d(tangent) {}
  // The headers' row sums return double; the value part is what they accumulate.
  MFK_HD_INLINE explicit operator double() const { return static_cast<double>(v); }

  MFK_HD_INLINE Dual& operator+=(const Dual& o) {
    v += o.v;
    d += o.d;
    return *this;
  }
  MFK_HD_INLINE Dual& operator-=(const Dual& o) {
    v -= o.v;
    d -= o.d;
    return *this;
  }
  MFK_HD_INLINE Dual& operator*=(const Dual& o) {
    d = d * o.v + v * o.d;
    v *= o.v;
    return *this;
  }
  MFK_HD_INLINE Dual& operator/=(const Dual& o) {
    *this = Dual(v / o.v, (d - v / o.v * o.d) / o.v);
    return *this;
  }
};

static_assert(sizeof(Dual<double>) == 2 * sizeof(double), "Dual<T> must be laid out as two T's");
static_assert(std::is_trivially_copyable<Dual<float>>::value, "Dual<T> must be trivially copyable");

template <typename T>
MFK_HD_INLINE Dual<T> operator+(Dual<T> a, const Dual<T>& b) {
  return a += b;
}
template <typename T>
MFK_HD_INLINE Dual<T> operator-(Dual<T> a, const Dual<T>& b) {
  return a -= b;
}
template <typename T>
MFK_HD_INLINE Dual<T> operator*(Dual<T> a, const Dual<T>& b) {
  return a *= b;
}
template <typename T>
MFK_HD_INLINE Dual<T> operator/(Dual<T> a, const Dual<T>& b) {
  return a /= b;
}
template <typename T>
MFK_HD_INLINE Dual<T> operator-(const Dual<T>& a) {
  return Dual<T>(-a.v, -a.d);
}

template <typename T>
MFK_HD_INLINE bool operator<(const Dual<T>& a, const Dual<T>& b) {
  return a.v < b.v;
}
template <typename T>
MFK_HD_INLINE bool operator>(const Dual<T>& a, const Dual<T>& b) {
  return a.v > b.v;
}
template <typename T>
MFK_HD_INLINE bool operator<=(const Dual<T>& a, const Dual<T>& b) {
  return a.v <= b.v;
}
template <typename T>
MFK_HD_INLINE bool operator>=(const Dual<T>& a, const Dual<T>& b) {
  return a.v >= b.v;
}
template <typename T>
MFK_HD_INLINE bool operator==(const Dual<T>& a, const Dual<T>& b) {
  return a.v == b.v;
}
template <typename T>
MFK_HD_INLINE bool operator!=(const Dual<T>& a, const Dual<T>& b) {
  return a.v != b.v;
}

// The scalar functions of host_device.h, each with its derivative; the value uses the same code.
template <typename T>
MFK_HD_INLINE Dual<T> exp_(const Dual<T>& a) {
  const T e = exp_(a.v);
  return Dual<T>(e, e * a.d);
}
template <typename T>
MFK_HD_INLINE Dual<T> log_(const Dual<T>& a) {
  return Dual<T>(log_(a.v), a.d / a.v);
}
template <typename T>
MFK_HD_INLINE Dual<T> log1p_(const Dual<T>& a) {
  return Dual<T>(log1p_(a.v), a.d / (T(1) + a.v));
}
template <typename T>
MFK_HD_INLINE Dual<T> sqrt_(const Dual<T>& a) {
  const T r = sqrt_(a.v);
  return Dual<T>(r, a.d / (T(2) * r));
}
template <typename T>
MFK_HD_INLINE Dual<T> tanh_(const Dual<T>& a) {
  const T t = tanh_(a.v);
  return Dual<T>(t, (T(1) - t * t) * a.d);
}

}  // namespace mfk

// quiet_nan_<Dual<T>>() and neg_inf_ of the headers read numeric_limits.
namespace std {
template <typename T>
class numeric_limits<mfk::Dual<T>> {
 public:
  static constexpr bool is_specialized = true;
  MFK_HD static mfk::Dual<T> quiet_NaN() { return mfk::Dual<T>(numeric_limits<T>::quiet_NaN(), T(0)); }
  MFK_HD static mfk::Dual<T> infinity() { return mfk::Dual<T>(numeric_limits<T>::infinity(), T(0)); }
};
}  // namespace std
