# cmake -DBUILD_DIR=... -DTARGET=... -DMAP=... -P expect_rejected.cmake
# Builds TARGET, which must fail, and checks that the compiler refused MAP (its name in the
# instantiation trace) with the static_assert message of each of visit, visit_all and
# insert_or_visit/emplace_or_visit (detail/visit.hpp; a build failing for another reason - a
# typo, a missing header - fails the test).
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${TARGET}
                RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(log "${out}${err}")
if(result EQUAL 0)
  message(FATAL_ERROR "${TARGET} compiled, but ${MAP} must reject callbacks that need V&")
endif()
string(FIND "${log}" "safemap::${MAP}<" at)
if(at EQUAL -1)
  message(FATAL_ERROR "the refusal does not name safemap::${MAP}:\n${log}")
endif()
foreach(message "safemap: visit(key, f) cannot change" "safemap: visit_all(f) cannot change"
                "safemap: insert_or_visit/emplace_or_visit cannot change")
  string(FIND "${log}" "${message}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "no '${message}' static_assert in the output:\n${log}")
  endif()
endforeach()
message(STATUS "${MAP}: all four calls rejected with their messages")
