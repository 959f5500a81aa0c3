# What `cmake --install` puts beside cnnlua for C programs: libcnn.so and libcnn.a, the public
# headers under include/cnn/, cnn.pc for pkg-config and the CMake package (find_package(cnn),
# targets cnn::cnn and cnn::cnn_static). Included by the top-level CMakeLists.txt.
include(CMakePackageConfigHelpers)

install(TARGETS cnn_shared cnn_static EXPORT cnnTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# runtime/include/cnn/ holds exactly the public headers (private ones sit beside their .c)
install(DIRECTORY runtime/include/cnn DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")
install(FILES ${CNN_GENERATED_INCLUDE_DIR}/cnn/version.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/cnn)

set(CNN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/cnn)
install(EXPORT cnnTargets NAMESPACE cnn:: DESTINATION ${CNN_CMAKE_DIR})
configure_package_config_file(cmake/cnnConfig.cmake.in ${CMAKE_BINARY_DIR}/cnnConfig.cmake
  INSTALL_DESTINATION ${CNN_CMAKE_DIR})
# before 1.0 a minor version may break the API, as libcnn's SONAME says
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(CNN_COMPATIBILITY SameMinorVersion)
else()
  set(CNN_COMPATIBILITY SameMajorVersion)
endif()
write_basic_package_version_file(${CMAKE_BINARY_DIR}/cnnConfigVersion.cmake COMPATIBILITY ${CNN_COMPATIBILITY})
install(FILES ${CMAKE_BINARY_DIR}/cnnConfig.cmake ${CMAKE_BINARY_DIR}/cnnConfigVersion.cmake
  DESTINATION ${CNN_CMAKE_DIR})

# cnn.pc names the prefix it is installed under (`cmake --install --prefix P` included), so it is
# written at install time from a template whose other fields are filled in here.
string(JOIN " " CNN_PC_LIBS_PRIVATE ${CNN_DEP_LDFLAGS})
configure_file(cmake/cnn.pc.in ${CMAKE_BINARY_DIR}/cnn.pc.template @ONLY)
install(CODE "
  file(READ \"${CMAKE_BINARY_DIR}/cnn.pc.template\" pc)
  string(REPLACE \"%PREFIX%\" \"\${CMAKE_INSTALL_PREFIX}\" pc \"\${pc}\")
  file(WRITE \"${CMAKE_BINARY_DIR}/pkgconfig/cnn.pc\" \"\${pc}\")
  file(INSTALL DESTINATION \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig\" TYPE FILE
       FILES \"${CMAKE_BINARY_DIR}/pkgconfig/cnn.pc\")")
