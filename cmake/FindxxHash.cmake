# Finds xxHash's header (Debian: libxxhash-dev). safemap uses xxHash in its inline mode
# (XXH_INLINE_ALL), so only the include directory is needed, never the shared library.
# Defines the imported target xxHash::xxhash.
include(FindPackageHandleStandardArgs)
find_path(XXHASH_INCLUDE_DIR NAMES xxhash.h)
if(XXHASH_INCLUDE_DIR AND EXISTS "${XXHASH_INCLUDE_DIR}/xxhash.h")
  file(STRINGS "${XXHASH_INCLUDE_DIR}/xxhash.h" _xxh_version_lines
       REGEX "#define XXH_VERSION_(MAJOR|MINOR|RELEASE)[ \t]+[0-9]+")
  foreach(_part MAJOR MINOR RELEASE)
    string(REGEX REPLACE ".*#define XXH_VERSION_${_part}[ \t]+([0-9]+).*" "\\1" _xxh_${_part} "${_xxh_version_lines}")
  endforeach()
  set(xxHash_VERSION "${_xxh_MAJOR}.${_xxh_MINOR}.${_xxh_RELEASE}")
endif()
find_package_handle_standard_args(xxHash REQUIRED_VARS XXHASH_INCLUDE_DIR VERSION_VAR xxHash_VERSION)
if(xxHash_FOUND AND NOT TARGET xxHash::xxhash)
  add_library(xxHash::xxhash INTERFACE IMPORTED)
  set_target_properties(xxHash::xxhash PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${XXHASH_INCLUDE_DIR}")
endif()
mark_as_advanced(XXHASH_INCLUDE_DIR)
