// Read by Doxygen only (docs/api/Doxyfile): declares the {fmt} templates that json.hpp
// specializes, so Doxygen knows their scope without parsing {fmt} itself.
namespace fmt {
template <class T, class Char>
struct formatter;
template <class T, class Char>
struct is_range;
}  // namespace fmt
