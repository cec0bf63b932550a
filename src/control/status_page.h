/* The admin listener's status page (GET /). */
#ifndef SLUICE_STATUS_PAGE_H
#define SLUICE_STATUS_PAGE_H

extern const char status_page_html[];

#endif
