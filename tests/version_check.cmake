# One version everywhere: include/safemap/version.hpp's macros, the CMake project (and so the
# package's safemapConfigVersion.cmake and safemap.pc) and CHANGELOG.md's newest release.
# Usage: cmake -DSOURCE_DIR=<repo> -DPROJECT_VERSION=<x.y.z> -P version_check.cmake
file(READ "${SOURCE_DIR}/include/safemap/version.hpp" header)
foreach(part MAJOR MINOR PATCH)
  if(NOT header MATCHES "#define SAFEMAP_VERSION_${part} ([0-9]+)")
    message(FATAL_ERROR "version.hpp has no SAFEMAP_VERSION_${part}")
  endif()
  set(${part} ${CMAKE_MATCH_1})
endforeach()
set(from_macros "${MAJOR}.${MINOR}.${PATCH}")
if(NOT header MATCHES "#define SAFEMAP_VERSION \"([^\"]+)\"")
  message(FATAL_ERROR "version.hpp has no SAFEMAP_VERSION string")
endif()
set(from_string "${CMAKE_MATCH_1}")
file(STRINGS "${SOURCE_DIR}/CHANGELOG.md" releases REGEX "^## \\[?[0-9]+\\.[0-9]+\\.[0-9]+")
list(GET releases 0 newest)
string(REGEX MATCH "[0-9]+\\.[0-9]+\\.[0-9]+" from_changelog "${newest}")
message("macros ${from_macros}, string ${from_string}, CMake ${PROJECT_VERSION}, CHANGELOG ${from_changelog}")
if(NOT from_macros STREQUAL from_string OR NOT from_macros STREQUAL PROJECT_VERSION
   OR NOT from_macros STREQUAL from_changelog)
  message(FATAL_ERROR "the version differs between version.hpp, CMakeLists.txt and CHANGELOG.md")
endif()
