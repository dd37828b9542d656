# -DDINGBRIDGE_PORTABLE=ON: binaries for the RPM (RHEL 9 family) built on Debian 12. Everything
# the project brings is linked in statically, so the binaries need only glibc, OpenSSL 3, libcurl
# and zlib from the target system (scripts/check-rpm-deps.sh checks the result):
#   * libstdc++ and libgcc statically (RHEL 9's libstdc++ is GCC 11's, older than GCC 12's);
#   * yaml-cpp, libevent, SQLite, utf8proc from Debian's own static archives (.a);
#   * simdjson, fmt and spdlog from their sources (Debian ships no .a for them), compiled once into
#     static libraries: DINGBRIDGE_SIMDJSON_SOURCE, DINGBRIDGE_FMT_SOURCE and DINGBRIDGE_SPDLOG_SOURCE
#     name the unpacked Debian sources of the installed versions (scripts/package.sh fetches them
#     with `apt-get source`). fmt and spdlog compile against the installed headers, as Debian's
#     shared libraries do. (Their header-only modes compiled fmt and spdlog into every file that
#     logs: the build took 1.4 times as long.)
#   * libcurl through a link-time stand-in with the same soname but no symbol versions: Debian's
#     libcurl tags every symbol CURL_OPENSSL_4, which RHEL's libcurl does not have; the binary then
#     asks for unversioned curl_* symbols, which any libcurl.so.4 (Debian's included) provides.
# Defines the targets the CMakeLists files use (yaml-cpp, spdlog::spdlog, PkgConfig::LIBEVENT,
# simdjson::simdjson, PkgConfig::SQLITE3, PkgConfig::UTF8PROC, CURL::libcurl) before they would be looked up.
set(DINGBRIDGE_SIMDJSON_SOURCE "" CACHE PATH "Unpacked simdjson source (with singleheader/simdjson.cpp)")
set(DINGBRIDGE_FMT_SOURCE "" CACHE PATH "Unpacked fmt source (with src/format.cc)")
set(DINGBRIDGE_SPDLOG_SOURCE "" CACHE PATH "Unpacked spdlog source (with src/spdlog.cpp)")
foreach(dep_file SIMDJSON:singleheader/simdjson.cpp:simdjson FMT:src/format.cc:fmtlib SPDLOG:src/spdlog.cpp:spdlog)
  string(REPLACE ":" ";" dep_file "${dep_file}")
  list(GET dep_file 0 dep)
  list(GET dep_file 1 file)
  list(GET dep_file 2 source_package)
  if(NOT EXISTS "${DINGBRIDGE_${dep}_SOURCE}/${file}")
    message(FATAL_ERROR "DINGBRIDGE_PORTABLE needs -DDINGBRIDGE_${dep}_SOURCE=<unpacked source with ${file}> "
                        "(apt-get source ${source_package}; scripts/package.sh rpm fetches it)")
  endif()
endforeach()
set(multiarch_lib /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE})
function(static_archive var name)
  find_file(${var} NAMES lib${name}.a PATHS ${multiarch_lib} /usr/lib NO_DEFAULT_PATH REQUIRED)
endfunction()

# libgcc stays shared (libgcc_s.so.1 is in every RHEL): GCC 12's static unwinder calls
# _dl_find_object (glibc 2.35).
add_link_options(-static-libstdc++)
# No build-tree RPATH: the binaries must load the system libcurl, never the link-time stand-in.
set(CMAKE_SKIP_BUILD_RPATH ON)
enable_language(C)
string(REPLACE "-O3" "-O2" CMAKE_C_FLAGS_RELEASE "${CMAKE_C_FLAGS_RELEASE}")  # as C++ (top level)
# arc4random/arc4random_buf (glibc 2.36), called by Debian's static libevent and by GCC 12's
# static libstdc++ (std::random_device): an object file in every later target, so never libc's.
add_library(dingbridge_glibc_compat OBJECT ${CMAKE_CURRENT_LIST_DIR}/glibc_compat.c)
target_link_libraries(dingbridge_glibc_compat PRIVATE dingbridge_warnings)  # ours, defined at the top level
find_package(Threads REQUIRED)
find_package(OpenSSL 3 REQUIRED)

static_archive(yaml_cpp_a yaml-cpp)
add_library(yaml-cpp STATIC IMPORTED GLOBAL)
set_target_properties(yaml-cpp PROPERTIES IMPORTED_LOCATION ${yaml_cpp_a})

# fmt and spdlog as Debian builds its shared libraries (spdlog: SPDLOG_COMPILED_LIB with the
# external fmt), but static; only the sources' src/ directories are used, the headers installed.
add_library(dingbridge_fmt STATIC ${DINGBRIDGE_FMT_SOURCE}/src/format.cc ${DINGBRIDGE_FMT_SOURCE}/src/os.cc)
target_compile_options(dingbridge_fmt PRIVATE -w)
add_library(dingbridge_spdlog STATIC)
foreach(part spdlog stdout_sinks color_sinks file_sinks async cfg)
  target_sources(dingbridge_spdlog PRIVATE ${DINGBRIDGE_SPDLOG_SOURCE}/src/${part}.cpp)
endforeach()
target_compile_definitions(dingbridge_spdlog PUBLIC SPDLOG_COMPILED_LIB SPDLOG_FMT_EXTERNAL)
target_compile_options(dingbridge_spdlog PRIVATE -w)
target_link_libraries(dingbridge_spdlog PUBLIC dingbridge_fmt Threads::Threads)
add_library(spdlog::spdlog ALIAS dingbridge_spdlog)
# Their sources are built as their upstreams build them, one file at a time (no unity build).
set_target_properties(dingbridge_fmt dingbridge_spdlog PROPERTIES UNITY_BUILD OFF)

set(libevent_archives)
foreach(part core extra openssl pthreads)
  static_archive(libevent_${part}_a event_${part})
  list(APPEND libevent_archives ${libevent_${part}_a})
endforeach()
add_library(PkgConfig::LIBEVENT INTERFACE IMPORTED GLOBAL)
set_target_properties(PkgConfig::LIBEVENT PROPERTIES
  INTERFACE_LINK_LIBRARIES "${libevent_archives};OpenSSL::SSL;OpenSSL::Crypto;Threads::Threads")

static_archive(utf8proc_a utf8proc)
add_library(PkgConfig::UTF8PROC STATIC IMPORTED GLOBAL)
set_target_properties(PkgConfig::UTF8PROC PROPERTIES IMPORTED_LOCATION ${utf8proc_a})

static_archive(sqlite3_a sqlite3)
add_library(PkgConfig::SQLITE3 INTERFACE IMPORTED GLOBAL)
set_target_properties(PkgConfig::SQLITE3 PROPERTIES
  INTERFACE_LINK_LIBRARIES "${sqlite3_a};${CMAKE_DL_LIBS};m;Threads::Threads")

add_library(dingbridge_simdjson STATIC ${DINGBRIDGE_SIMDJSON_SOURCE}/singleheader/simdjson.cpp)
target_include_directories(dingbridge_simdjson SYSTEM BEFORE PUBLIC ${DINGBRIDGE_SIMDJSON_SOURCE}/singleheader)
target_compile_definitions(dingbridge_simdjson PUBLIC SIMDJSON_THREADS_ENABLED=1)
target_compile_options(dingbridge_simdjson PRIVATE -w)
target_link_libraries(dingbridge_simdjson PUBLIC Threads::Threads)
add_library(simdjson::simdjson ALIAS dingbridge_simdjson)

# libcurl stand-in: every function Debian's libcurl exports, unversioned, soname libcurl.so.4.
find_path(CURL_INCLUDE_DIRS curl/curl.h REQUIRED)
execute_process(COMMAND nm -D --defined-only ${multiarch_lib}/libcurl.so.4 OUTPUT_VARIABLE curl_nm
                COMMAND_ERROR_IS_FATAL ANY)
string(REGEX MATCHALL "[TW] curl_[A-Za-z0-9_]+" curl_symbols "${curl_nm}")
set(stub "/* generated by packaging/portable.cmake: link-time stand-in, never installed */\n")
foreach(sym ${curl_symbols})
  string(REGEX REPLACE "^[TW] " "" sym "${sym}")
  string(APPEND stub "void ${sym}(void) {}\n")
endforeach()
file(WRITE ${CMAKE_BINARY_DIR}/curl_stub/curl_stub.c "${stub}")
add_library(dingbridge_curl_stub SHARED ${CMAKE_BINARY_DIR}/curl_stub/curl_stub.c)
set_target_properties(dingbridge_curl_stub PROPERTIES OUTPUT_NAME curl SOVERSION 4
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/curl_stub)
add_library(CURL::libcurl INTERFACE IMPORTED GLOBAL)
set_target_properties(CURL::libcurl PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${CURL_INCLUDE_DIRS}"
  INTERFACE_LINK_LIBRARIES dingbridge_curl_stub)

link_libraries(dingbridge_glibc_compat)
