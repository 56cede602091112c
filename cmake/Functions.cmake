# sofaas_function(NAME SOURCE [OUTPUT_DIR dir])
# Builds a sofaas function the way a user would: a shared object that
# includes only include/sofaas.h. No sanitizer flags, so an instrumented
# daemon and worker can still load plain user code.
function(sofaas_function name src)
  cmake_parse_arguments(F "" "OUTPUT_DIR" "" ${ARGN})
  if(NOT F_OUTPUT_DIR)
    set(F_OUTPUT_DIR ${CMAKE_BINARY_DIR}/examples)
  endif()
  add_library(${name} MODULE ${src})
  set_target_properties(${name} PROPERTIES PREFIX "" OUTPUT_NAME ${name}
    LIBRARY_OUTPUT_DIRECTORY ${F_OUTPUT_DIR} C_VISIBILITY_PRESET default)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/include)
  target_compile_options(${name} PRIVATE -O2 -fno-sanitize=all)
  target_link_options(${name} PRIVATE -fno-sanitize=all)
endfunction()
