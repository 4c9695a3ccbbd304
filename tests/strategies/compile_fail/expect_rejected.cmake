# cmake -DBUILD_DIR=... -DTARGET=... -DMAP=... -P expect_rejected.cmake
# Builds TARGET, which must fail, and checks that the compiler printed MAP's static_assert
# message for each of visit, visit_all, insert_or_visit and emplace_or_visit (a build failing
# for another reason - a typo, a missing header - fails the test).
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${TARGET}
                RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(log "${out}${err}")
if(result EQUAL 0)
  message(FATAL_ERROR "${TARGET} compiled, but ${MAP} must reject callbacks that need V&")
endif()
foreach(call visit visit_all insert_or_visit emplace_or_visit)
  string(FIND "${log}" "${MAP}::${call} cannot change" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "no '${MAP}::${call} cannot change' static_assert in the output:\n${log}")
  endif()
endforeach()
message(STATUS "${MAP}: all four calls rejected with their messages")
