"""URLs of the example site: a plain-text home page and the admin."""

from django.contrib import admin
from django.urls import path
from notes.views import home

urlpatterns = [
    path("", home, name="home"),
    path("admin/", admin.site.urls),
]
