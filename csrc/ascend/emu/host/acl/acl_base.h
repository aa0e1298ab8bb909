// Stand-in (see ../README.md): the one acl type the launcher and aclrtlaunch headers use.
#pragma once
typedef void* aclrtStream;
