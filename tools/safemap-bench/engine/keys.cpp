#include "keys.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace safemap_bench {

std::string string_key(std::uint64_t index) {
  static constexpr char hex[] = "0123456789abcdef";
  static constexpr char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  std::uint64_t r = fmix64(index ^ 0x5bd1e9955bd1e995ULL);
  const std::size_t prefix = r % 9;
  std::string s;
  s.reserve(prefix + 16);
  for (std::size_t j = 0; j < prefix; ++j) {
    r = fmix64(r + j);
    s.push_back(letters[r % (sizeof letters - 1)]);
  }
  // The hex digits of a bijection of the index make distinct indexes give distinct keys,
  // whatever the prefix.
  std::uint64_t v = fmix64(index);
  for (int j = 0; j < 16; ++j, v >>= 4) s.push_back(hex[v & 15]);
  return s;
}

std::string_view to_string(key_dist d) noexcept {
  return d == key_dist::zipf ? "zipf" : "uniform";
}

zipf_table::zipf_table(std::size_t n, double s) : cdf_(n) {
  if (n == 0) throw std::invalid_argument("zipf_table: no keys");
  if (!(s > 0)) throw std::invalid_argument("zipf_table: the exponent must be > 0");
  double sum = 0;
  for (std::size_t r = 0; r < n; ++r) {
    sum += 1.0 / std::pow(static_cast<double>(r + 1), s);
    cdf_[r] = sum;
  }
  for (double& c : cdf_) c /= sum;
  cdf_.back() = 1.0;  // no rounding gap at the top
}

std::size_t zipf_table::sample(double u) const noexcept {
  // The first rank whose cumulative probability exceeds u.
  const auto it = std::upper_bound(cdf_.begin(), cdf_.end(), u);
  return it == cdf_.end() ? cdf_.size() - 1 : static_cast<std::size_t>(it - cdf_.begin());
}

std::vector<mix_op> make_mix_ops(const mix_spec& spec) {
  if (spec.write_pct > 100) throw std::invalid_argument("mix: write percentage above 100");
  if (spec.keys == 0 || spec.keys > 0x7fffffffU) throw std::invalid_argument("mix: 1..2^31 keys");
  if (spec.length == 0 || (spec.length & (spec.length - 1)) != 0) {
    throw std::invalid_argument("mix: the cycle length must be a power of two");
  }
  std::vector<mix_op> ops(spec.length);
  splitmix64 rng{spec.seed};
  if (spec.dist == key_dist::zipf) {
    const zipf_table zipf(spec.keys, spec.zipf_s);
    for (std::size_t j = 0; j < ops.size(); ++j) {
      ops[j] = static_cast<mix_op>(zipf.sample(rng.next_unit()));
    }
  } else {
    for (std::size_t j = 0; j < ops.size(); ++j) {
      ops[j] = static_cast<mix_op>(rng.next() % spec.keys);
    }
  }
  for (std::size_t j = 0; j < ops.size(); ++j) {
    if (mix_position_is_write(j, spec.write_pct)) ops[j] |= 0x80000000U;
  }
  return ops;
}

}  // namespace safemap_bench
