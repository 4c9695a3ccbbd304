// safemap/version.hpp - the library's version, the same one the CMake package, safemap.pc and
// CHANGELOG.md carry (a test, tests/version_check.cmake, fails the build's tests if they differ).
//
// Every public header includes this one, so code that includes any safemap header can test
// SAFEMAP_VERSION_MAJOR/MINOR/PATCH in #if. The version follows Semantic Versioning; before
// 1.0.0 a minor release may change the API (CHANGELOG.md says how).
#pragma once

#define SAFEMAP_VERSION_MAJOR 0
#define SAFEMAP_VERSION_MINOR 2
#define SAFEMAP_VERSION_PATCH 0
#define SAFEMAP_VERSION "0.2.0"

// One number for comparisons in #if: major * 10000 + minor * 100 + patch.
#define SAFEMAP_VERSION_NUMBER \
  (SAFEMAP_VERSION_MAJOR * 10000 + SAFEMAP_VERSION_MINOR * 100 + SAFEMAP_VERSION_PATCH)
