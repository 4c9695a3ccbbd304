// adapters/lfht_adapter.hpp - liburcu's lock-free resizable hash table (cds_lfht, Debian
// liburcu-dev) with RCU readers: a uint64 key -> uint64 value map.
//
// Readers run inside an RCU read-side critical section and take no lock. Each entry is an
// immutable node; a store replaces the node (cds_lfht_add_replace) and the old one is freed
// with call_rcu after a grace period, as liburcu's own examples do. It uses the "memb" flavour
// that safemap's reclaim.hpp uses, and safemap::rcu::read_guard for the read-side sections, so
// the two share one thread registration and one call_rcu worker.
//
// Integer keys only (string keys would need a node per key with an owned string; not written).
// Memory per entry: the nodes come from operator new; the bucket index (2^16 buckets at least,
// see initial_buckets) comes from calloc and is seen by mallinfo2 only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "adapters/common.hpp"
#include "safemap/reclaim.hpp"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#include <urcu/urcu-memb.h>
// urcu-memb.h must come first: rculfhash.h is written against the flavour included before it.
#include <urcu/rculfhash.h>
#pragma GCC diagnostic pop

namespace safemap_bench {

class lfht_adapter {
 public:
  // The table starts with 2^16 buckets (and never shrinks below): liburcu 0.13.2's lazy
  // auto-resize, started from a small table, sometimes stops growing it somewhere between 32k
  // and 64k entries, after which every insert walks a chain thousands of nodes long (seen in
  // 6 of 15 runs of a 30-line C program filling 65536 keys on this 2-core machine). Starting
  // at 2^16 keeps the default sizes clear of that; past them auto-resize still grows it.
  static constexpr unsigned long initial_buckets = 1UL << 16;

  using key_type = std::uint64_t;
  using value_type = std::uint64_t;

  lfht_adapter()
      : ht_(cds_lfht_new_flavor(initial_buckets, initial_buckets, 0,
                                CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, &urcu_memb_flavor,
                                nullptr)) {
    if (ht_ == nullptr) throw std::bad_alloc();
  }
  lfht_adapter(const lfht_adapter&) = delete;
  lfht_adapter& operator=(const lfht_adapter&) = delete;
  ~lfht_adapter() {
    {
      safemap::rcu::read_guard guard;
      cds_lfht_iter it;
      for (cds_lfht_first(ht_, &it); cds_lfht_iter_get_node(&it) != nullptr;
           cds_lfht_next(ht_, &it)) {
        cds_lfht_node* n = cds_lfht_iter_get_node(&it);
        if (cds_lfht_del(ht_, n) == 0) retire(entry_of(n));
      }
    }
    cds_lfht_destroy(ht_, nullptr);  // outside any read-side section, as liburcu requires
  }

  bool load(key_type k, value_type& out) const {
    safemap::rcu::read_guard guard;
    if (const entry* e = find_locked(k)) {
      out = e->value;
      return true;
    }
    return false;
  }
  bool load_or_store(key_type k, value_type v, value_type& actual) {
    safemap::rcu::read_guard guard;
    if (const entry* e = find_locked(k)) {  // a hit allocates nothing
      actual = e->value;
      return true;
    }
    auto* fresh = new entry(k, v);
    cds_lfht_node* got = cds_lfht_add_unique(ht_, hash(k), &match, &fresh->key, &fresh->node);
    if (got != &fresh->node) {
      delete fresh;  // never published: no grace period needed
      actual = entry_of(got)->value;
      return true;
    }
    actual = v;
    return false;
  }
  bool load_and_delete(key_type k, value_type& out) {
    safemap::rcu::read_guard guard;
    for (;;) {
      cds_lfht_iter it;
      cds_lfht_lookup(ht_, hash(k), &match, &k, &it);
      cds_lfht_node* n = cds_lfht_iter_get_node(&it);
      if (n == nullptr) return false;
      if (cds_lfht_del(ht_, n) == 0) {
        out = entry_of(n)->value;
        retire(entry_of(n));
        return true;
      }
      // Replaced or deleted concurrently: look again.
    }
  }
  void store(key_type k, value_type v) {
    value_type ignored = 0;
    swap(k, v, ignored);
  }
  bool erase(key_type k) {
    value_type ignored = 0;
    return load_and_delete(k, ignored);
  }
  bool swap(key_type k, value_type v, value_type& previous) {
    safemap::rcu::read_guard guard;
    auto* fresh = new entry(k, v);
    cds_lfht_node* old = cds_lfht_add_replace(ht_, hash(k), &match, &fresh->key, &fresh->node);
    if (old == nullptr) return false;
    previous = entry_of(old)->value;
    retire(entry_of(old));
    return true;
  }
  bool compare_and_swap(key_type k, value_type expected, value_type desired) {
    safemap::rcu::read_guard guard;
    for (;;) {
      cds_lfht_iter it;
      cds_lfht_lookup(ht_, hash(k), &match, &k, &it);
      cds_lfht_node* n = cds_lfht_iter_get_node(&it);
      if (n == nullptr || entry_of(n)->value != expected) return false;
      auto* fresh = new entry(k, desired);
      if (cds_lfht_replace(ht_, &it, hash(k), &match, &k, &fresh->node) == 0) {
        retire(entry_of(n));
        return true;
      }
      delete fresh;  // the node changed under us: look again
    }
  }
  template <class F>
  void range(F f) const {
    safemap::rcu::read_guard guard;
    cds_lfht_iter it;
    for (cds_lfht_first(ht_, &it); cds_lfht_iter_get_node(&it) != nullptr;
         cds_lfht_next(ht_, &it)) {
      const entry* e = entry_of(cds_lfht_iter_get_node(&it));
      if (!f(e->key, e->value)) break;
    }
  }
  void serialize(std::string& out) const {
    json_copy<key_type> copy;
    range([&](key_type k, value_type v) {
      copy.insert_or_assign(k, v);
      return true;
    });
    safemap::write_json(copy, out);
  }
  void fill(const std::vector<std::pair<key_type, value_type>>& entries) {
    for (const auto& [k, v] : entries) store(k, v);
  }

 private:
  // Standard layout, node first: a cds_lfht_node* is the entry's address.
  struct entry {
    entry(key_type k, value_type v) : key(k), value(v) { cds_lfht_node_init(&node); }
    cds_lfht_node node;
    rcu_head head{};
    key_type key;
    value_type value;
  };

  static std::size_t hash(key_type k) noexcept { return peer_u64_hash{}(k); }
  static entry* entry_of(cds_lfht_node* n) noexcept { return reinterpret_cast<entry*>(n); }
  static int match(cds_lfht_node* n, const void* key) noexcept {
    return entry_of(n)->key == *static_cast<const key_type*>(key);
  }
  static void free_entry(rcu_head* h) noexcept {
    delete reinterpret_cast<entry*>(reinterpret_cast<char*>(h) - offsetof(entry, head));
  }
  // Called inside a read-side section (the thread is registered).
  static void retire(entry* e) noexcept { urcu_memb_call_rcu(&e->head, &free_entry); }

  const entry* find_locked(key_type k) const {
    cds_lfht_iter it;
    cds_lfht_lookup(ht_, hash(k), &match, &k, &it);
    cds_lfht_node* n = cds_lfht_iter_get_node(&it);
    return n == nullptr ? nullptr : entry_of(n);
  }

  cds_lfht* ht_;
};

}  // namespace safemap_bench
