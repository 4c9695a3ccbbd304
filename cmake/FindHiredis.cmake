# Finds hiredis, the C client of Redis (Debian: libhiredis-dev), and defines hiredis::hiredis.
# safemap::redis (RedisMap) links it; the header-only core does not.
include(FindPackageHandleStandardArgs)
find_path(Hiredis_INCLUDE_DIR NAMES hiredis/hiredis.h)
find_library(Hiredis_LIBRARY NAMES hiredis)
find_package_handle_standard_args(Hiredis REQUIRED_VARS Hiredis_LIBRARY Hiredis_INCLUDE_DIR)
if(Hiredis_FOUND AND NOT TARGET hiredis::hiredis)
  add_library(hiredis::hiredis INTERFACE IMPORTED)
  set_target_properties(hiredis::hiredis PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${Hiredis_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "${Hiredis_LIBRARY}")
endif()
mark_as_advanced(Hiredis_INCLUDE_DIR Hiredis_LIBRARY)
