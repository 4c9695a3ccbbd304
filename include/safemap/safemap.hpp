// safemap/safemap.hpp - umbrella header: every public safemap header.
#pragma once

#include "safemap/concurrent.hpp"
#include "safemap/hash.hpp"
#include "safemap/json.hpp"
#include "safemap/map.hpp"
#include "safemap/misuse.hpp"
#include "safemap/persist.hpp"
#include "safemap/reclaim.hpp"
