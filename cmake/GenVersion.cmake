# Run at build time (cmake -P): writes OUT from IN with KATA_VERSION_STRING set to
# "<project version>-<git describe>" (or KATA_VERSION_OVERRIDE), touching OUT only when the
# text changes, so binaries report the commit they were built from without needless relinks.
execute_process(COMMAND git describe --always --dirty --tags
                WORKING_DIRECTORY ${SRC_DIR}
                OUTPUT_VARIABLE describe OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT describe)
  set(describe "unknown")
endif()
if(OVERRIDE)
  set(KATA_VERSION_STRING "${OVERRIDE}")
else()
  set(KATA_VERSION_STRING "${PROJECT_VERSION}-${describe}")
endif()
configure_file(${IN} ${OUT} @ONLY)
