// Errors raised by deltaproduct. Every failed check names the argument, what was expected and what was found,
// so a caller can fix the call without reading the library.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace deltaproduct {

/// Base of every exception the library throws.
class Error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A call argument violates the contract (shape, layout, range, null data...).
class ArgumentError : public Error {
public:
  ArgumentError(std::string argument, std::string expected, std::string actual)
      : Error("deltaproduct: argument '" + argument + "': expected " + expected + ", got " + actual),
        argument_(std::move(argument)), expected_(std::move(expected)), actual_(std::move(actual)) {}

  const std::string& argument() const noexcept { return argument_; }
  const std::string& expected() const noexcept { return expected_; }
  const std::string& actual() const noexcept { return actual_; }

private:
  std::string argument_;
  std::string expected_;
  std::string actual_;
};

namespace detail {

/// Formats any streamable value for an error message.
template <class T>
std::string to_text(const T& value) {
  std::ostringstream out;
  out.precision(17);
  out << value;
  return out.str();
}

[[noreturn]] inline void argument_error(std::string argument, std::string expected, std::string actual) {
  throw ArgumentError(std::move(argument), std::move(expected), std::move(actual));
}

}  // namespace detail
}  // namespace deltaproduct
