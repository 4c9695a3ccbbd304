// safemap/safemap.hpp - umbrella header: every public safemap header.
#pragma once

#include "safemap/cancellable_once.hpp"
#include "safemap/concurrent.hpp"
#include "safemap/cow_map.hpp"
#include "safemap/hash.hpp"
#include "safemap/json.hpp"
#include "safemap/locked_map.hpp"
#include "safemap/map.hpp"
#include "safemap/misuse.hpp"
#include "safemap/persist.hpp"
#include "safemap/pipeline.hpp"
#include "safemap/reclaim.hpp"
#include "safemap/restore.hpp"
#include "safemap/sharded_map.hpp"
#include "safemap/sync_map.hpp"
