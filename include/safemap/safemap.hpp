// safemap/safemap.hpp - umbrella header: every public safemap header (but redis_map.hpp, a
// separate target; pipeline.hpp only where SAFEMAP_HAS_PIPELINE).
#pragma once

#include "safemap/concurrent.hpp"
#include "safemap/cow_map.hpp"
#include "safemap/detail/config.hpp"  // SAFEMAP_HAS_PIPELINE
#include "safemap/hash.hpp"
#include "safemap/json.hpp"
#include "safemap/locked_map.hpp"
#include "safemap/map.hpp"
#include "safemap/misuse.hpp"
#include "safemap/persist.hpp"
#if SAFEMAP_HAS_PIPELINE  // C++20 <stop_token>: not in libc++ before 18 (detail/config.hpp)
#include "safemap/cancellable_once.hpp"
#include "safemap/pipeline.hpp"
#endif
#include "safemap/reclaim.hpp"
#include "safemap/restore.hpp"
#include "safemap/sharded_map.hpp"
#include "safemap/sync_map.hpp"
#include "safemap/trie_map.hpp"
