# Version check for find_package(eplb <version>): the version is read from the installed eplb.h
# (EPLB_VERSION_MAJOR/MINOR/PATCH), so this file never goes stale. Compatible when the major
# version matches and the installed version is not older; for 0.x the minor version must match too.

get_filename_component(_eplb_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(_eplb_header "")
foreach(_eplb_dir "${_eplb_prefix}/include/eplb" "${_eplb_prefix}/include")
  if(NOT _eplb_header AND EXISTS "${_eplb_dir}/eplb.h")
    set(_eplb_header "${_eplb_dir}/eplb.h")
  endif()
endforeach()

set(PACKAGE_VERSION "0.0.0")
if(_eplb_header)
  file(STRINGS "${_eplb_header}" _eplb_lines REGEX "^#define EPLB_VERSION_(MAJOR|MINOR|PATCH) [0-9]+")
  foreach(_eplb_part MAJOR MINOR PATCH)
    set(_eplb_${_eplb_part} 0)
    foreach(_eplb_line IN LISTS _eplb_lines)
      if(_eplb_line MATCHES "^#define EPLB_VERSION_${_eplb_part} ([0-9]+)")
        set(_eplb_${_eplb_part} "${CMAKE_MATCH_1}")
      endif()
    endforeach()
  endforeach()
  set(PACKAGE_VERSION "${_eplb_MAJOR}.${_eplb_MINOR}.${_eplb_PATCH}")
endif()

set(PACKAGE_VERSION_COMPATIBLE FALSE)
set(PACKAGE_VERSION_EXACT FALSE)
if(NOT _eplb_header)
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
elseif(NOT PACKAGE_FIND_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
elseif(NOT PACKAGE_VERSION VERSION_LESS PACKAGE_FIND_VERSION
       AND _eplb_MAJOR EQUAL PACKAGE_FIND_VERSION_MAJOR
       AND (NOT _eplb_MAJOR EQUAL 0 OR _eplb_MINOR EQUAL PACKAGE_FIND_VERSION_MINOR))
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_VERSION VERSION_EQUAL PACKAGE_FIND_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()

# Installed for a 64-bit target: refuse a 32-bit consumer.
if(CMAKE_SIZEOF_VOID_P AND NOT CMAKE_SIZEOF_VOID_P EQUAL 8)
  set(PACKAGE_VERSION "${PACKAGE_VERSION} (64-bit)")
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
endif()
