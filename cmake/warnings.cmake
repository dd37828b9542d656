# Warning flags for the project's own code only (third-party code built here, such as the portable
# build's simdjson, keeps its own flags): an interface target that each of our targets links.
#   -DDINGBRIDGE_WERROR=ON   warnings are errors (CI)
add_library(dingbridge_warnings INTERFACE)
target_compile_options(dingbridge_warnings INTERFACE -Wall -Wextra $<$<BOOL:${DINGBRIDGE_WERROR}>:-Werror>)

# dingbridge_apply_warnings(<dir>...): links dingbridge_warnings into every compiled target defined
# in these source directories and their subdirectories, so that a new target cannot be forgotten.
function(dingbridge_apply_warnings)
  foreach(dir ${ARGN})
    get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
    foreach(target ${targets})
      get_target_property(type ${target} TYPE)
      if(type MATCHES "^(EXECUTABLE|STATIC_LIBRARY|SHARED_LIBRARY|MODULE_LIBRARY|OBJECT_LIBRARY)$")
        target_link_libraries(${target} PRIVATE dingbridge_warnings)
      endif()
    endforeach()
    get_property(subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
    dingbridge_apply_warnings(${subdirs})
  endforeach()
endfunction()
