// safemap/safemap.hpp - umbrella header: every public safemap header.
#pragma once

#include "safemap/hash.hpp"
#include "safemap/map.hpp"
#include "safemap/misuse.hpp"
