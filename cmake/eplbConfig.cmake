# CMake package configuration of an installed eplb (`cargo cinstall --release --prefix <prefix>`
# puts it at <prefix>/share/eplb/cmake/). Relocatable: paths are found relative to this file.
#
#   find_package(eplb CONFIG REQUIRED)                     # -DCMAKE_PREFIX_PATH=<prefix>
#   target_link_libraries(app PRIVATE eplb::eplb)         # libeplb.so
#   target_link_libraries(app PRIVATE eplb::eplb_static)  # libeplb.a and its system libraries
#
# Both targets carry the include directory of eplb.h and eplb.hpp. Sets eplb_VERSION (from the
# header, by eplbConfigVersion.cmake) and eplb_INCLUDE_DIR.

get_filename_component(_eplb_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)

set(_eplb_include "")
foreach(_eplb_dir "${_eplb_prefix}/include/eplb" "${_eplb_prefix}/include")
  if(NOT _eplb_include AND EXISTS "${_eplb_dir}/eplb.h")
    set(_eplb_include "${_eplb_dir}")
  endif()
endforeach()

# cargo-c installs into lib/<multiarch triplet> on Debian-like systems unless --libdir is given.
set(_eplb_libdirs "${_eplb_prefix}/lib" "${_eplb_prefix}/lib64")
if(CMAKE_LIBRARY_ARCHITECTURE)
  list(INSERT _eplb_libdirs 0 "${_eplb_prefix}/lib/${CMAKE_LIBRARY_ARCHITECTURE}")
endif()
set(_eplb_shared "")
set(_eplb_static "")
foreach(_eplb_dir IN LISTS _eplb_libdirs)
  if(NOT _eplb_shared AND EXISTS "${_eplb_dir}/${CMAKE_SHARED_LIBRARY_PREFIX}eplb${CMAKE_SHARED_LIBRARY_SUFFIX}")
    set(_eplb_shared "${_eplb_dir}/${CMAKE_SHARED_LIBRARY_PREFIX}eplb${CMAKE_SHARED_LIBRARY_SUFFIX}")
  endif()
  if(NOT _eplb_static AND EXISTS "${_eplb_dir}/${CMAKE_STATIC_LIBRARY_PREFIX}eplb${CMAKE_STATIC_LIBRARY_SUFFIX}")
    set(_eplb_static "${_eplb_dir}/${CMAKE_STATIC_LIBRARY_PREFIX}eplb${CMAKE_STATIC_LIBRARY_SUFFIX}")
  endif()
endforeach()

if(NOT _eplb_include OR NOT _eplb_shared OR NOT _eplb_static)
  set(eplb_FOUND FALSE)
  set(eplb_NOT_FOUND_MESSAGE
      "eplb under ${_eplb_prefix} is incomplete: header '${_eplb_include}', shared library "
      "'${_eplb_shared}', static library '${_eplb_static}'")
  return()
endif()

set(eplb_INCLUDE_DIR "${_eplb_include}")

if(NOT TARGET eplb::eplb)
  add_library(eplb::eplb SHARED IMPORTED)
  set_target_properties(eplb::eplb PROPERTIES
    IMPORTED_LOCATION "${_eplb_shared}"
    INTERFACE_INCLUDE_DIRECTORIES "${_eplb_include}")
endif()

if(NOT TARGET eplb::eplb_static)
  # What `rustc --print native-static-libs` reports for the staticlib.
  if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
    set(_eplb_system_libs gcc_s util rt pthread m dl c)
  else()
    set(_eplb_system_libs ${CMAKE_DL_LIBS})
  endif()
  add_library(eplb::eplb_static STATIC IMPORTED)
  set_target_properties(eplb::eplb_static PROPERTIES
    IMPORTED_LOCATION "${_eplb_static}"
    IMPORTED_LINK_INTERFACE_LANGUAGES "C"
    INTERFACE_INCLUDE_DIRECTORIES "${_eplb_include}"
    INTERFACE_LINK_LIBRARIES "${_eplb_system_libs}")
endif()

unset(_eplb_dir)
unset(_eplb_libdirs)
unset(_eplb_include)
unset(_eplb_shared)
unset(_eplb_static)
unset(_eplb_system_libs)
unset(_eplb_prefix)
