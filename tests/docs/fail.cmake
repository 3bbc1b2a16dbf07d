# A docs test for a block that breaks the convention of tests/docs/README.md:
#   cmake -D MESSAGE=<file:line: what is wrong> -P fail.cmake
message(FATAL_ERROR "${MESSAGE}")
