# `cpack -G DEB` (from the build folder): a .deb of what `cmake --install` puts under
# CMAKE_INSTALL_PREFIX (cnnlua, the Lua modules and cnn.core, libcnn, headers, cnn.pc, the CMake
# package, examples, docs). Configure with -DCMAKE_INSTALL_PREFIX=/usr -DCNN_NATIVE=OFF for a package
# other machines can use (`setup.sh --deb` does). Depends comes from dpkg-shlibdeps (dpkg-dev) over
# the ELF files. DESTDIR staging, so cnn.pc and cnnlua name the real prefix, not CPack's staging folder.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME cnnlua)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "cnnlua maintainers <maintainers@users.noreply.b-seed-f480fcbb.example>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "deep learning runtime: a C engine (libcnn) driven from Lua 5.4")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "A C engine (tensors, autograd, convolution kernels) and cnnlua,
the Lua 5.4 interpreter, REPL and training scripts around it; libcnn.so, libcnn.a and the C
headers (cnn.pc, find_package(cnn)) for C programs.")
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # cnnlua_VERSION_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# the plots need a font, cnn.trainer lfs, hp.search dkjson; lua5.4 runs `require "cnn"` from plain Lua
set(CPACK_DEBIAN_PACKAGE_DEPENDS "fonts-dejavu-core, lua-filesystem, lua-dkjson")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "lua5.4, lua-argparse")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_SET_DESTDIR ON)
set(CPACK_STRIP_FILES ON)
include(CPack)
