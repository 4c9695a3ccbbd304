#include "registry.hpp"

#include <fmt/format.h>

namespace safemap_bench {

std::optional<std::string> map_entry::unsupported(const workload& w, unsigned threads,
                                                  bool fixed_ops) const {
  if (w.string_keys && !string_keys) return std::string("integer keys only");
  const bool ranges_while_writing =
      w.kind == workload_kind::adversarial_delete || w.kind == workload_kind::serialize_json;
  if (!range_safe_with_writers && ranges_while_writing && threads > 1) {
    return std::string("its iteration is not safe with concurrent writers");
  }
  const bool erases = w.kind == workload_kind::load_and_delete_balanced ||
                      w.kind == workload_kind::load_and_delete_unique ||
                      w.kind == workload_kind::load_and_delete_collision ||
                      w.kind == workload_kind::delete_collision ||
                      w.kind == workload_kind::adversarial_delete;
  if (!concurrent_erase && erases && threads > 1) {
    return std::string("it has no concurrent erase");
  }
  if (copies_on_write && fixed_ops && w.grows_with_ops) {
    return std::string(
        "every write copies the growing map: quadratic with --ops (Go skips its DeepCopyMap "
        "here too)");
  }
  return std::nullopt;
}

map_registry& registry() {
  static map_registry r;
  return r;
}

}  // namespace safemap_bench
