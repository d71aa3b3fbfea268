# kata_proto_library(<target> PROTOS a.proto b.proto ... [IMPORT_DIRS dir ...] [DEPS lib ...])
# Generates C++ for the given .proto files (paths relative to the current source dir, which is
# also the import root) and builds them into a static library whose include dir exposes the
# generated headers under the same relative paths.
function(kata_proto_library target)
  cmake_parse_arguments(P "" "" "PROTOS;IMPORT_DIRS;DEPS" ${ARGN})
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/gen)
  file(MAKE_DIRECTORY ${out_dir})
  set(import_args -I${CMAKE_CURRENT_SOURCE_DIR})
  foreach(d ${P_IMPORT_DIRS})
    list(APPEND import_args -I${d})
  endforeach()
  set(srcs)
  set(hdrs)
  foreach(proto ${P_PROTOS})
    string(REGEX REPLACE "\\.proto$" "" base ${proto})
    list(APPEND srcs ${out_dir}/${base}.pb.cc)
    list(APPEND hdrs ${out_dir}/${base}.pb.h)
    add_custom_command(
      OUTPUT ${out_dir}/${base}.pb.cc ${out_dir}/${base}.pb.h
      COMMAND protobuf::protoc --cpp_out=${out_dir} ${import_args} ${CMAKE_CURRENT_SOURCE_DIR}/${proto}
      DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${proto} protobuf::protoc
      COMMENT "protoc ${proto}"
      VERBATIM)
  endforeach()
  add_library(${target} STATIC ${srcs} ${hdrs})
  target_include_directories(${target} PUBLIC ${out_dir})
  target_link_libraries(${target} PUBLIC protobuf::libprotobuf ${P_DEPS})
  target_compile_options(${target} PRIVATE -Wno-unused-parameter)
endfunction()
