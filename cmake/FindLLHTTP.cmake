# FindLLHTTP - llhttp from Debian's node-llhttp package.
#
# Debian ships llhttp's C sources (not a library) in /usr/share/llhttp and its
# header in /usr/share/include/llhttp. We compile those sources into a static
# library here; nothing from llhttp is copied into this repository.
#
# Defines the imported target LLHTTP::llhttp and LLHTTP_FOUND.

find_path(LLHTTP_INCLUDE_DIR llhttp.h
  PATHS /usr/share/include/llhttp /usr/include/llhttp /usr/local/include
  NO_DEFAULT_PATH)
find_path(LLHTTP_SOURCE_DIR llhttp.c
  PATHS /usr/share/llhttp
  NO_DEFAULT_PATH)

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(LLHTTP
  REQUIRED_VARS LLHTTP_INCLUDE_DIR LLHTTP_SOURCE_DIR)

if(LLHTTP_FOUND AND NOT TARGET LLHTTP::llhttp)
  add_library(sf_llhttp STATIC
    ${LLHTTP_SOURCE_DIR}/llhttp.c
    ${LLHTTP_SOURCE_DIR}/api.c
    ${LLHTTP_SOURCE_DIR}/http.c)
  target_include_directories(sf_llhttp SYSTEM PUBLIC ${LLHTTP_INCLUDE_DIR})
  # Strict mode: refuse what lenient parsers tolerate (bare LF, junk in
  # header names, ...). Request bytes are hostile; ambiguity is smuggling.
  target_compile_definitions(sf_llhttp PUBLIC LLHTTP_STRICT_MODE=1)
  set_target_properties(sf_llhttp PROPERTIES POSITION_INDEPENDENT_CODE ON)
  # Generated code: not ours to warn about.
  target_compile_options(sf_llhttp PRIVATE -w)
  add_library(LLHTTP::llhttp ALIAS sf_llhttp)
endif()
