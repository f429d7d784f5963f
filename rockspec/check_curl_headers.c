/* Compiled first when the rock builds passage.core: stops the build with
 * a message that says what to install when libcurl's headers are missing,
 * instead of the compiler's "curl/curl.h: No such file or directory". */
#if defined(__has_include)
#if !__has_include(<curl/curl.h>)
#error "libcurl headers not found: install libcurl4-openssl-dev (Debian, Ubuntu), libcurl-devel (Fedora, RHEL) or curl (Homebrew), or pass CURL_INCDIR=<the directory holding curl/curl.h>"
#endif
#endif

typedef int psg_curl_headers_found;
