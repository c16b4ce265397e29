/* The site the crawler example crawls, generated from a seed.
 *
 * DIR/index.html and n pages DIR/d<k>/page<i>.html, k = i % 8, linked with
 * cycles (a ring through every page that is not an island, plus random
 * links), links back to the index and to the page itself, links to missing
 * files, duplicate links on one page, every spelling of a path (relative,
 * "./", "../", root-absolute, detours through other directories, doubled
 * slashes, fragments) and of a tag (quotes of either kind or none, upper
 * case, attributes around href, '>' inside a value, newlines). About one page
 * in ten is an island: only islands link to it, so it is unreachable. Noise
 * that a correct crawler must not follow points at islands: links inside
 * comments, href on other tags, a tag cut off by the end of the file.
 *
 * From its own model of the links, not by parsing the HTML, it writes what a
 * correct crawl finds: DIR/expected-reachable.txt (pages reachable from the
 * index, the index included) and DIR/expected-broken.txt (missing files
 * reachable from the index), one path per line. */
#ifndef SITE_H
#define SITE_H

#include <stdint.h>

#define SITE_MAX_PAGES 99999u

/* Returns 0; 1 on an I/O error, 2 on a bad page count (both said on stderr). */
int site_gen(const char *dir, uint32_t pages, uint32_t seed);

#endif
