# Install layout and the Debian package (CPack DEB).
#
#   sbin/sofaasd                          the daemon
#   libexec/sofaas/sofaas-worker          found by sofaasd relative to itself
#   include/sofaas.h, share/pkgconfig/sofaas.pc   for function authors
#   lib/systemd/system/sofaasd.{service,socket}
#   /etc/sofaas/sofaasd.json              (FULL_SYSCONFDIR: /etc for /usr)
#   share/man/man8/sofaasd.8.gz, share/man/man7/sofaas-function.7.gz
#   share/doc/sofaas/                     docs
include(GNUInstallDirs)

set(SOFAAS_LIBEXECDIR ${CMAKE_INSTALL_LIBEXECDIR}/sofaas)
set(SOFAAS_UNITDIR lib/systemd/system CACHE STRING
    "systemd unit directory, relative to the prefix")
file(RELATIVE_PATH SOFAAS_WORKER_REL
     ${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_SBINDIR}
     ${CMAKE_INSTALL_PREFIX}/${SOFAAS_LIBEXECDIR}/sofaas-worker)
target_compile_definitions(sofaasd PRIVATE
  SOFAAS_WORKER_REL="${SOFAAS_WORKER_REL}")

install(TARGETS sofaasd RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS sofaas-worker RUNTIME DESTINATION ${SOFAAS_LIBEXECDIR})
install(FILES include/sofaas.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# Header-only, so arch-independent; prefix is derived from where the .pc
# file lands, so `cmake --install --prefix X` stays correct.
configure_file(packaging/sofaas.pc.in ${CMAKE_BINARY_DIR}/sofaas.pc @ONLY)
file(READ ${CMAKE_BINARY_DIR}/sofaas.pc _pc)
string(REGEX REPLACE "prefix=[^\n]*" "prefix=\${pcfiledir}/../.." _pc "${_pc}")
file(WRITE ${CMAKE_BINARY_DIR}/sofaas.pc "${_pc}")
install(FILES ${CMAKE_BINARY_DIR}/sofaas.pc
        DESTINATION ${CMAKE_INSTALL_DATADIR}/pkgconfig)

# Units and the default config. The checked-in units name /usr/sbin/sofaasd
# and /etc/sofaas; they are rewritten for the prefix at install time (so
# `cmake --install --prefix X` and cpack both get true paths). The config
# goes to /etc when the prefix is /usr (GNU convention), else PREFIX/etc.
install(CODE "set(SOFAAS_SRC \"${CMAKE_SOURCE_DIR}\")
  set(SOFAAS_BIN \"${CMAKE_BINARY_DIR}\")
  set(SOFAAS_SBINDIR \"${CMAKE_INSTALL_SBINDIR}\")
  set(SOFAAS_UNITDIR \"${SOFAAS_UNITDIR}\")")
install(CODE [[
  if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
    set(_etc /etc)
  else()
    set(_etc "${CMAKE_INSTALL_PREFIX}/etc")
  endif()
  file(INSTALL "${SOFAAS_SRC}/packaging/sofaasd.json"
       DESTINATION "${_etc}/sofaas")
  # Not CMAKE_CURRENT_BINARY_DIR: in an install script that is the
  # caller's working directory.
  set(_gen "${SOFAAS_BIN}/packaging/units")
  file(MAKE_DIRECTORY "${_gen}")
  foreach(u sofaasd.service sofaasd.socket)
    file(READ "${SOFAAS_SRC}/packaging/systemd/${u}" _u)
    string(REPLACE "/usr/sbin/sofaasd"
           "${CMAKE_INSTALL_PREFIX}/${SOFAAS_SBINDIR}/sofaasd" _u "${_u}")
    string(REPLACE "/etc/sofaas/" "${_etc}/sofaas/" _u "${_u}")
    file(WRITE "${_gen}/${u}" "${_u}")
    file(INSTALL "${_gen}/${u}"
         DESTINATION "${CMAKE_INSTALL_PREFIX}/${SOFAAS_UNITDIR}")
  endforeach()
]])

# Man pages: version stamped, gzipped (Debian policy), also left in
# build/man/ so tests can point MANPATH there.
find_program(GZIP gzip REQUIRED)
set(_mans)
foreach(m sofaasd.8 sofaas-function.7)
  string(REGEX MATCH "[0-9]$" _sec ${m})
  set(_src ${CMAKE_SOURCE_DIR}/man/${m})
  set(_out ${CMAKE_BINARY_DIR}/man/man${_sec}/${m}.gz)
  add_custom_command(OUTPUT ${_out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man/man${_sec}
    COMMAND sed "s/@VERSION@/${PROJECT_VERSION}/" ${_src} | ${GZIP} -9n > ${_out}
    DEPENDS ${_src} VERBATIM)
  list(APPEND _mans ${_out})
  install(FILES ${_out} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${_sec})
endforeach()
add_custom_target(manpages ALL DEPENDS ${_mans})

install(FILES README.md docs/operations.md docs/configuration.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
# Debian policy: the license as /usr/share/doc/<package>/copyright.
install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME copyright)

# ---- Debian package: cpack -G DEB (from the build directory) ----------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME sofaas)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "sofaas maintainers <sofaas@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "self-hosted Function-as-a-Service daemon")
set(CPACK_PACKAGE_DESCRIPTION
    "sofaasd serves functions compiled as shared objects over HTTP. Each\ninvocation runs in a pre-forked, sandboxed worker process; state is kept\nin SQLite. Includes the systemd units and the header for function authors.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Install with CMAKE_INSTALL_PREFIX=/usr and DESTDIR=staging, so the code
# above sees the real prefix (and puts the config in /etc).
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # sofaas_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/sofaas/sofaas")
# Library dependencies (libuv1, libcjson1, libseccomp2, libsqlite3-0, libc6)
# with the right minimum versions come from dpkg-shlibdeps on the installed
# binaries; llhttp is compiled in. adduser is for the maintainer scripts.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# libseccomp2 is named explicitly: the worker's seccomp filter needs it
# even while a build links it only as-needed.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, libseccomp2 (>= 2.5.4)")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "sqlite3, nginx")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/packaging/debian/conffiles
    ${CMAKE_SOURCE_DIR}/packaging/debian/postinst
    ${CMAKE_SOURCE_DIR}/packaging/debian/prerm
    ${CMAKE_SOURCE_DIR}/packaging/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_STRIP_FILES ON)
include(CPack)
