# Compiles every public header on its own with clang++ -stdlib=libc++ (-fsyntax-only,
# -Werror). pipeline.hpp and cancellable_once.hpp must compile where the library has <stop_token> and fail with its
# own #error (not a missing-header error) where it does not; safemap.hpp must compile either
# way. Usage: cmake -DCXX=clang++ -DINCLUDE_DIR=include -P libcxx_headers.cmake
file(GLOB headers RELATIVE "${INCLUDE_DIR}" "${INCLUDE_DIR}/safemap/*.hpp")
execute_process(COMMAND sh -c "printf '#include <version>\\n#ifdef __cpp_lib_jthread\\nHAS\\n#endif\\n' | '${CXX}' -std=c++20 -stdlib=libc++ -E -x c++ -"
                OUTPUT_VARIABLE probe)
string(FIND "${probe}" "HAS" has_jthread)
set(failed "")
foreach(h IN LISTS headers)
  if(h STREQUAL "safemap/redis_map.hpp")
    continue()  # its own target (hiredis), built and tested with it
  endif()
  file(WRITE "${CMAKE_CURRENT_BINARY_DIR}/libcxx_check.cpp" "#include <${h}>\n")
  execute_process(COMMAND "${CXX}" -std=c++20 -stdlib=libc++ -fsyntax-only -Wall -Wextra -Werror
                          -I${INCLUDE_DIR} "${CMAKE_CURRENT_BINARY_DIR}/libcxx_check.cpp"
                  RESULT_VARIABLE rc ERROR_VARIABLE err)
  if((h STREQUAL "safemap/pipeline.hpp" OR h STREQUAL "safemap/cancellable_once.hpp") AND has_jthread EQUAL -1)
    if(rc EQUAL 0 OR NOT err MATCHES "needs C\\+\\+20 std::stop_token")
      list(APPEND failed "${h} (expected its own #error)")
    endif()
  elseif(NOT rc EQUAL 0)
    message("${h}:\n${err}")
    list(APPEND failed ${h})
  endif()
endforeach()
list(LENGTH headers n)
if(failed)
  message(FATAL_ERROR "libc++: these headers failed: ${failed}")
endif()
message("libc++: all ${n} headers compile (pipeline.hpp: jthread ${has_jthread})")
