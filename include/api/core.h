/* The core every dialect calls (native, Hermes, the preview proxy): the
 * services main builds before the front door and frees after it. A dialect
 * parses, calls these and renders; it keeps no SQL and makes no Docker call. */
#ifndef SANDBAR_API_CORE_H
#define SANDBAR_API_CORE_H

struct agentfs;
struct commands;
struct files_transfer;
struct preview_public;
struct preview_secret;
struct registry;
struct sandbox_service;
struct tasks;

struct core {
	struct sandbox_service *svc;
	struct registry *reg;
	struct commands *cmds;
	struct tasks *tasks;			     /* coding-agent tasks */
	struct agentfs *fs;			     /* files through the agent */
	struct files_transfer *xfer;		     /* uploads, downloads, archives */
	const struct preview_public *preview;	     /* how preview URLs look (domain "": none) */
	const struct preview_secret *preview_secret; /* signs private previews' tokens */
};

#endif
