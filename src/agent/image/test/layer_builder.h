// Hand-built layer tarballs (libarchive's writer, pax format) for the unpack tests, including
// the hostile entries a real tool would never write.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "kata/agent/image/manifest.h"

namespace kata::agent::image::test {

class LayerBuilder {
  public:
    struct Entry {
        std::string path;
        mode_t type = AE_IFREG;
        mode_t perm = 0644;
        std::string data;
        std::string link;      // symlink target
        std::string hardlink;  // hard link target
        int64_t uid = 0;
        int64_t gid = 0;
        std::map<std::string, std::string> xattrs;
        time_t mtime = 1700000000;
    };

    LayerBuilder& file(const std::string& path, const std::string& data, mode_t perm = 0644,
                       int64_t uid = 0, int64_t gid = 0,
                       std::map<std::string, std::string> xattrs = {}) {
        Entry e;
        e.path = path;
        e.data = data;
        e.perm = perm;
        e.uid = uid;
        e.gid = gid;
        e.xattrs = std::move(xattrs);
        entries_.push_back(e);
        return *this;
    }
    LayerBuilder& dir(const std::string& path, mode_t perm = 0755, int64_t uid = 0,
                      int64_t gid = 0) {
        Entry e;
        e.path = path;
        e.type = AE_IFDIR;
        e.perm = perm;
        e.uid = uid;
        e.gid = gid;
        entries_.push_back(e);
        return *this;
    }
    LayerBuilder& symlink(const std::string& path, const std::string& target) {
        Entry e;
        e.path = path;
        e.type = AE_IFLNK;
        e.perm = 0777;
        e.link = target;
        entries_.push_back(e);
        return *this;
    }
    LayerBuilder& hardlink(const std::string& path, const std::string& target) {
        Entry e;
        e.path = path;
        e.hardlink = target;
        entries_.push_back(e);
        return *this;
    }
    LayerBuilder& special(const std::string& path, mode_t type) {
        Entry e;
        e.path = path;
        e.type = type;
        e.perm = 0600;
        entries_.push_back(e);
        return *this;
    }
    LayerBuilder& whiteout(const std::string& dir, const std::string& name) {
        return file((dir.empty() ? "" : dir + "/") + ".wh." + name, "");
    }
    LayerBuilder& opaque(const std::string& dir) { return file(dir + "/.wh..wh..opq", ""); }

    // Writes the tarball; returns its size.
    int64_t write(const std::string& path, Compression compression = Compression::kNone) const {
        struct archive* a = archive_write_new();
        archive_write_set_format_pax(a);
        if (compression == Compression::kGzip) archive_write_add_filter_gzip(a);
        if (compression == Compression::kZstd) archive_write_add_filter_zstd(a);
        if (archive_write_open_filename(a, path.c_str()) != ARCHIVE_OK)
            throw std::runtime_error(std::string("open layer for writing: ") +
                                     archive_error_string(a));
        for (const auto& e : entries_) {
            struct archive_entry* ae = archive_entry_new();
            archive_entry_set_pathname(ae, e.path.c_str());
            archive_entry_set_uid(ae, e.uid);
            archive_entry_set_gid(ae, e.gid);
            archive_entry_set_mtime(ae, e.mtime, 0);
            if (!e.hardlink.empty()) {
                archive_entry_set_filetype(ae, AE_IFREG);
                archive_entry_set_perm(ae, 0644);
                archive_entry_set_hardlink(ae, e.hardlink.c_str());
                archive_entry_set_size(ae, 0);
            } else {
                archive_entry_set_filetype(ae, e.type);
                archive_entry_set_perm(ae, e.perm);
                if (e.type == AE_IFLNK) archive_entry_set_symlink(ae, e.link.c_str());
                if (e.type == AE_IFCHR || e.type == AE_IFBLK)
                    archive_entry_set_rdev(ae, makedev(1, 3));
                archive_entry_set_size(
                    ae, e.type == AE_IFREG ? static_cast<int64_t>(e.data.size()) : 0);
            }
            for (const auto& [k, v] : e.xattrs)
                archive_entry_xattr_add_entry(ae, k.c_str(), v.data(), v.size());
            if (archive_write_header(a, ae) != ARCHIVE_OK)
                throw std::runtime_error(std::string("write header ") + e.path + ": " +
                                         archive_error_string(a));
            if (e.type == AE_IFREG && e.hardlink.empty() && !e.data.empty())
                archive_write_data(a, e.data.data(), e.data.size());
            archive_entry_free(ae);
        }
        archive_write_close(a);
        archive_write_free(a);
        struct stat st {};
        ::stat(path.c_str(), &st);
        return st.st_size;
    }

  private:
    std::vector<Entry> entries_;
};

}  // namespace kata::agent::image::test
