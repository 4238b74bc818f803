// The library's version, kept equal to project(VERSION) in CMakeLists.txt (a test checks it).
#pragma once

#define DELTAPRODUCT_VERSION_MAJOR 0
#define DELTAPRODUCT_VERSION_MINOR 1
#define DELTAPRODUCT_VERSION_PATCH 0

namespace deltaproduct {
inline constexpr int version_major = DELTAPRODUCT_VERSION_MAJOR;
inline constexpr int version_minor = DELTAPRODUCT_VERSION_MINOR;
inline constexpr int version_patch = DELTAPRODUCT_VERSION_PATCH;
}  // namespace deltaproduct
